"""Typed configuration sections of export.py (the model choice every entry point reads is
:class:`src.models.choice.ModelChoice`).

Built once from the loaded configuration by :func:`export_sections` (``run_export`` does it
first); the exporter below reads these frozen values, never the configuration. Each is filled by
field name (:func:`src.utils.config_fill.fill_section`; the options are declared in
:mod:`model_utils.options`, a test checks every option of a section is read) and no default is
written here. Paths are resolved here, as :func:`src.paths.resolve_path` finds them.
"""
from dataclasses import dataclass

from src.data.calib_data import CalibrationImages
from src.models.choice import ModelChoice, model_choice
from src.paths import resolve_path
from src.utils.config_fill import fill_section


@dataclass(frozen=True)
class ExportSettings:
    """What export.py writes: ``file_format`` (MINDIR, ONNX, ORT, AIR, TFLITE), ``target``
    (auto, desktop, mobile), ``export_file`` (empty: a name from the model), ``input_shape``
    (``"N,C,H,W"`` in LR pixels; empty: 1 x C x 360 x 640), ``quant`` (none, int8, float16),
    ``io_dtype`` (TFLite float32 or uint8 image bytes), the phone path's extra files (``phone_extras``:
    ``ort``, ``float16``) and whether to check the file (``export_check``)."""
    file_format: str
    target: str
    export_file: str
    input_shape: str
    quant: str
    io_dtype: str
    phone_extras: tuple
    export_check: bool


@dataclass(frozen=True)
class ExportRequest:
    """Everything export.py reads: the model, the export settings, the resolved ``output_path``,
    the device (``device_target``; AIR needs Ascend) and how ``--export_file`` was spelled on the
    command line (``--export_file`` or its old name ``--file_name``), for messages."""
    model: ModelChoice
    settings: ExportSettings
    output_path: str
    device_target: str
    export_option: str
    calibration: CalibrationImages = None


def calibration_images(config, hr_patch=192):
    """The :class:`~src.data.calib_data.CalibrationImages` of a loaded configuration (its ``calib_*``
    options; ``hr_patch``: the HR side of a patch)."""
    path = str(config.calib_path)
    return fill_section(CalibrationImages, config, "calib_", path=path, folder=resolve_path(config, path),
                        hr_patch=int(hr_patch), given="calib_path" in getattr(config, "cli_keys", ()))


def export_sections(config):
    """The :class:`ExportRequest` of a loaded configuration (:func:`model_utils.config.get_config`)."""
    return ExportRequest(model_choice(config), fill_section(ExportSettings, config),
                         resolve_path(config, config.output_path), config.device_target, config.option("export_file"),
                         calibration_images(config))
