"""Typed configuration sections of export.py (the model choice every entry point reads is
:class:`src.models.choice.ModelChoice`).

Built once from the loaded configuration by :func:`export_sections` (``run_export`` does it
first); the exporter below reads these frozen values, never the configuration. Field names are
configuration keys (:data:`model_utils.sections.SECTIONS` groups the same keys for ``--help``;
a test checks they agree) and no default is written here: every key comes from
``DIV2K_config.yaml`` (or a file checked against it). Paths are resolved here, as
:func:`src.paths.resolve_path` finds them.
"""
from dataclasses import dataclass

from src.models.choice import ModelChoice, model_choice
from src.paths import resolve_path
from src.utils.sections import dataclass_from_config


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
class CalibrationData:
    """Calibration images for the deployment grids of a checkpoint that has none (``--quant int8``):
    ``calib_path`` as given, ``calib_folder`` resolved, ``calib_num`` patches, ``calib_seed``;
    ``given``: ``--calib_path`` was set (only then is anything calibrated at export)."""
    calib_path: str
    calib_folder: str
    calib_num: int
    calib_seed: int
    given: bool


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
    calibration: CalibrationData = None


def export_sections(config):
    """The :class:`ExportRequest` of a loaded configuration (:func:`model_utils.config.get_config`)."""
    calibration = CalibrationData(str(config.calib_path), resolve_path(config, config.calib_path),
                                  int(config.calib_num), int(config.calib_seed),
                                  "calib_path" in getattr(config, "cli_keys", ()))
    return ExportRequest(model_choice(config), dataclass_from_config(ExportSettings, config),
                         resolve_path(config, config.output_path), config.device_target, config.option("export_file"),
                         calibration)
