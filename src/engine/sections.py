"""Typed configuration sections of training (BasicSR's nested option sections, flat in the YAML).

Each section is a frozen dataclass whose fields are configuration keys
(:data:`model_utils.sections.SECTIONS` groups the same keys for ``--help``; a test checks
they agree). :func:`training_sections` builds them once from the loaded configuration, so
the training code reads typed values and no default is written a second time here: every
key comes from ``DIV2K_config.yaml`` (or a file checked against it).
"""
from dataclasses import dataclass, fields


def _from(cls, config):
    """``cls`` with each field read from ``config`` (lists become tuples, so a section is hashable)."""
    values = {}
    for f in fields(cls):
        value = getattr(config, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


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
    keep_last_ckpt: int
    log_every: int
    tensorboard: bool


@dataclass(frozen=True)
class TrainingSections:
    """The sections a training run reads."""
    data: TrainData
    optim: Optimisation
    schedule: Schedule
    run: TrainingRun


def training_sections(config):
    """The training sections of a loaded configuration (:func:`model_utils.config.get_config`)."""
    return TrainingSections(_from(TrainData, config), _from(Optimisation, config), _from(Schedule, config),
                            _from(TrainingRun, config))
