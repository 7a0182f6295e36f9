"""Typed configuration sections of training, evaluation and upscaling (BasicSR's nested option
sections, flat in the YAML).

Each section is a frozen dataclass filled by field name from the options of one group of
:mod:`model_utils.options` (:func:`src.utils.config_fill.fill_section`: field ``f`` from option
``<prefix>f``; a test checks every option of the group is read), and so are the library settings
(:class:`~src.quantlib.ReconConfig` from ``recon_*``, :class:`~src.quantlib.PaCConfig` from
``pac_*``, ...). :func:`training_sections`, :func:`evaluation_sections` and
:func:`upscale_sections` build them once from the loaded configuration, where it enters ``src``
(the Trainer, ``run_evaluation``, ``run_upscale``), so the engines read typed values and no
default is written a second time here. Paths are resolved here, as :func:`src.paths.resolve_path`
finds them. Export's sections live in :mod:`src.export.sections` (export does not import the engine).
"""
from dataclasses import dataclass, replace

from src.data.calib_data import CalibrationImages
from src.export.sections import calibration_images
from src.models.choice import ModelChoice, model_choice
from src.paths import resolve_path
from src.quantlib import CalibrationConfig, PaCConfig, QuantConfig, ReconConfig, recipes
from src.quantlib.fake_quant import check_bits
from src.utils.config_fill import fill_section
from src.errors import UserError


@dataclass(frozen=True)
class TrainData:
    """Training images and batches: HR folder, LR patch size (pixels), batch size per worker, validation sets."""
    train_path: str
    patch_size: int
    batch_size: int
    val_data_path: str
    val_datasets: tuple
    num_workers: int
    dataset_enlarge_ratio: int
    channel_shuffle: bool
    train_cache_gb: float


@dataclass(frozen=True)
class Optimisation:
    """Adam, loss, EMA, gradient clipping, mixed precision and the non-finite step guard."""
    beta1: float
    beta2: float
    amsgrad: bool
    weight_decay: float
    clip_grad_norm: float
    ema_decay: float
    amp_level: str
    loss_scale: str
    loss_scale_value: float
    residual_loss_weight: float
    freeze_residual_steps: int
    max_bad_steps: int


@dataclass(frozen=True)
class Schedule:
    """Per-step learning rate: ``cosine`` (lr -> min_lr) or ``multistep`` (x lr_gamma at lr_milestones),
    after ``warmup_steps`` of linear warm-up, over ``total_steps``."""
    lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    lr_scheduler: str
    lr_milestones: tuple
    lr_gamma: float


@dataclass(frozen=True)
class TrainingRun:
    """Validation, checkpoints, resume and logs of one run (steps, folder, files kept)."""
    val_every: int
    seed: int
    ckpt_dir: str
    init_from: str
    qat: bool
    resume: bool
    overwrite: bool
    save_every: int
    save_every_minutes: float
    keep_last_ckpt: int
    log_every: int
    tensorboard: bool


@dataclass(frozen=True)
class EvalProtocol:
    """How an SR image is scored (the published protocol by default): LR made from HR at ``scale``
    (x2/x3/x4; MATLAB bicubic, cached under the resolved ``cache_dir``) unless an LR file exists,
    HR cropped to a multiple of ``gt_mod`` pixels, PSNR (dB) / SSIM on ``metric_channel``
    (``y``: BT.601 luma, or ``rgb``) without ``shave`` border pixels (-1: ``scale``)."""
    scale: int
    gt_mod: int
    metric_channel: str
    shave: int
    cache_dir: str


def shave_pixels(protocol):
    """Border pixels left out of PSNR/SSIM by ``protocol`` (an :class:`EvalProtocol` or an object with
    its fields): ``shave``, or ``scale`` when it is -1."""
    return protocol.scale if protocol.shave < 0 else protocol.shave


def eval_protocol_of(config):
    """The :class:`EvalProtocol` of a loaded configuration (``cache_dir`` resolved)."""
    return EvalProtocol(config.scale, config.gt_mod, config.metric_channel, config.shave,
                        resolve_path(config, config.cache_dir))


@dataclass(frozen=True)
class TrainingSections:
    """The sections a training run reads (``protocol``: how validation PSNR is measured)."""
    data: TrainData
    optim: Optimisation
    schedule: Schedule
    run: TrainingRun
    protocol: EvalProtocol


def training_sections(config):
    """The training sections of a loaded configuration (:func:`model_utils.config.get_config`)."""
    return TrainingSections(fill_section(TrainData, config), fill_section(Optimisation, config),
                            fill_section(Schedule, config),
                            fill_section(TrainingRun, config), eval_protocol_of(config))


@dataclass(frozen=True)
class EvalData:
    """Evaluation images: the resolved ``data_path`` root (DIV2K layout, ``benchmark/<Set>/HR``),
    the set names, and whether the built-in sample set may stand in for a missing DIV2K."""
    data_path: str
    eval_datasets: tuple
    sample_fallback: bool


@dataclass(frozen=True)
class Inference:
    """How a whole image is run (:class:`~src.engine.inference.SRPredictor`): x8 self-ensemble,
    LR tile side in pixels (0: from ``max_tile_mem_gb`` GiB, -1: never tile) and the tiles'
    LR context overlap in pixels (-1: the model's receptive radius); ``pixel_range`` ('auto', '1' or
    '255'): the pixel values of an exported file without SR metadata (src/runtime/runners.py)."""
    self_ensemble: bool
    tile_size: int
    tile_overlap: int
    max_tile_mem_gb: float
    pixel_range: str = "auto"


@dataclass(frozen=True)
class EvalOutputs:
    """Where evaluation writes: the resolved ``output_path`` folder, SR PNGs there (``save_sr``) and
    the JSON report (``result_file``, as given; empty: a name under ``output_path``)."""
    output_path: str
    save_sr: bool
    result_file: str


@dataclass(frozen=True)
class Quantization:
    """Post-training quantization of a run (eval.py ``--quant_method``, QAT's initialisation).

    ``method``: the ``--quant_method`` string (empty: none; ``dbdc_pac``: DBDC refined by PaC;
    ``dbdc_recon``: ``dbdc_pac`` then learned rounding with block reconstruction, ``recon``);
    ``qcfg`` / ``calib`` / ``pac`` / ``recon``: the quantlib settings (:class:`~src.quantlib.QuantConfig`,
    :class:`~src.quantlib.CalibrationConfig`, :class:`~src.quantlib.PaCConfig`,
    :class:`~src.quantlib.ReconConfig`, or None where the method has none) of
    :func:`quantization_of`; ``images``: where the calibration patches come from
    (:class:`~src.data.calib_data.CalibrationImages`); ``save_quant_ckpt`` (as given; ``save_target``
    resolved, empty: not saved) receives the calibrated model; ``recipe_note``: what the ``auto``
    recipe options resolved to (one line for the log; empty when none was ``auto``).
    """
    method: str
    qcfg: QuantConfig
    calib: CalibrationConfig
    pac: PaCConfig
    images: CalibrationImages
    save_quant_ckpt: str
    save_target: str
    recipe_note: str = ""
    recon: ReconConfig = None


def recipe_settings(config, method=None):
    """``(settings, picked, note)``: the six recipe options of :mod:`src.quantlib.recipes` with every
    ``auto`` resolved for ``method`` (default ``config.quant_method``) at the run's bit widths, the
    options that were ``auto``, and a one-line note of what ``dbdc_pac``'s recipe picked (empty
    for other methods, whose ``auto`` is the settings they always had, or when nothing was ``auto``)."""
    method = method or config.quant_method
    bits = (check_bits(config.w_bit), check_bits(config.a_bit))
    settings, picked = recipes.resolve(method, *bits, {k: getattr(config, k) for k in recipes.RECIPE_KEYS})
    if not picked or method not in recipes.RECIPE_METHODS:
        return settings, picked, ""
    shown = ", ".join(f"{k} {settings[k]:g}" if isinstance(settings[k], float) else f"{k} {settings[k]}"
                      for k in picked)
    return settings, picked, f"{method} W{bits[0]}A{bits[1]}: the {recipes.bit_class(*bits)}-bit recipe for {shown}"


def placement_of(config):
    """``quant_placement`` resolved: 'deploy' (the full-integer file's roundings,
    :mod:`src.quantlib.deploy`) or 'ptq4sr'; ``auto`` is 'deploy' at W8A8 with every layer quantized
    (the width a phone runs), else 'ptq4sr'. ValueError for 'deploy' where no full-integer file exists."""
    placement = str(getattr(config, "quant_placement", "auto"))
    phone = int(config.w_bit) == 8 and int(config.a_bit) == 8 and not config.fp_scope and not config.bit_table
    if placement == "auto":
        return "deploy" if phone else "ptq4sr"
    if placement == "deploy" and not phone:
        raise UserError("--quant_placement deploy simulates the full-integer 8-bit phone file: it needs --w_bit 8 "
                         "--a_bit 8 with every layer quantized (no fp_scope / bit_table); use auto or ptq4sr")
    return placement


def quantization_of(config, method=None):
    """The :class:`Quantization` of a loaded configuration; ``method`` overrides ``quant_method``
    (QAT calibrates with ``dbdc`` when none is given): an observer name, or ``dbdc_pac`` (the DBDC
    observer refined by PaC) or ``dbdc_recon``. Every library setting is filled by field name
    from its group of options (:func:`~src.utils.config_fill.fill_section`): ``QuantConfig`` from the
    quantization group, ``CalibrationConfig`` from ``calib_*`` and the quantization group, ``PaCConfig``
    from ``pac_*``, ``ReconConfig`` from ``recon_*``, the calibration images from ``calib_*``; recipe
    options left at ``auto`` take the bit width's values (:func:`recipe_settings`), PaC and the
    reconstruction draw their batches with the calibration seed."""
    method = method or config.quant_method
    images = calibration_images(config, config.pac_hr_patch)
    qcfg = calib = pac = recon = None
    note = ""
    if method:
        qcfg = fill_section(QuantConfig, config, placement=placement_of(config), defaults=("sites",))
        recipe, picked, note = recipe_settings(config, method)
        calib = fill_section(CalibrationConfig, config, ("calib_", ""), resolved=recipe,
                             method="dbdc" if method in recipes.RECIPE_METHODS else method,
                             equalize_if_pairs="equalize" in picked)
        if method in recipes.RECIPE_METHODS:
            pac = fill_section(PaCConfig, config, "pac_", resolved=recipe, seed=images.seed)
        if method == "dbdc_recon":
            recon = fill_section(ReconConfig, config, "recon_", seed=images.seed, defaults=("beta_start", "beta_end"))
    return Quantization(method, qcfg, calib, pac, images, config.save_quant_ckpt,
                        resolve_path(config, config.save_quant_ckpt), note, recon)


@dataclass(frozen=True)
class Evaluation:
    """Everything eval.py reads: the model, ``pre_trained`` (as given: a checkpoint or an exported
    file), the sections above, the options given on the command line (``given``: shipped
    defaults stand in for what was not given) and, with ``--quant_method``, the quantization
    settings (``quant``)."""
    model: ModelChoice
    pre_trained: str
    data: EvalData
    protocol: EvalProtocol
    inference: Inference
    outputs: EvalOutputs
    given: frozenset
    quant: Quantization

    def with_scale(self, scale):
        """These sections for an exported file's own scale (its metadata decides)."""
        return replace(self, model=replace(self.model, scale=scale), protocol=replace(self.protocol, scale=scale))


def evaluation_sections(config):
    """The :class:`Evaluation` of a loaded configuration (:func:`model_utils.config.get_config`)."""
    data = EvalData(resolve_path(config, config.data_path), tuple(config.eval_datasets), config.sample_fallback)
    outputs = EvalOutputs(resolve_path(config, config.output_path), config.save_sr, config.result_file)
    return Evaluation(model_choice(config), config.pre_trained, data, eval_protocol_of(config),
                      fill_section(Inference, config), outputs, frozenset(config.cli_keys), quantization_of(config))


@dataclass(frozen=True)
class Upscale:
    """What infer.py reads: the model, the resolved image file or folder to upscale (``input_path``),
    the model file (``model_file``, as given; empty: the checkpoint of ``--pre_trained``), the
    resolved ``output_path`` folder, how images are run, and whether ``--scale`` was given."""
    model: ModelChoice
    input_path: str
    model_file: str
    output_path: str
    inference: Inference
    scale_given: bool


def upscale_sections(config):
    """The :class:`Upscale` sections of a loaded configuration."""
    return Upscale(model_choice(config), resolve_path(config, config.input_path), config.model_file,
                   resolve_path(config, config.output_path), fill_section(Inference, config),
                   "scale" in config.cli_keys)
