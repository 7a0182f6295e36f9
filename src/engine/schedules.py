"""Per-step learning-rate schedules (lists handed to the optimizer), with linear warm-up.

- ``cosine``: ``lr`` decays to ``min_lr`` over the steps after warm-up.
- ``multistep``: ``lr`` times ``lr_gamma`` at each step of ``lr_milestones``
  (BasicSR/EDSR style; e.g. ABPN's published halving schedule).
"""
from src.utils.cosine import cosine_decay
from src.errors import UserError


def _warm(base_lr, step, warmup_steps):
    return base_lr * (step + 1) / warmup_steps


def cosine_lr(base_lr, min_lr, total_steps, warmup_steps=0):
    lrs = []
    for step in range(total_steps):
        if step < warmup_steps:
            lrs.append(_warm(base_lr, step, warmup_steps))
        else:
            t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            lrs.append(cosine_decay(base_lr, min_lr, t))
    return lrs


def multistep_lr(base_lr, milestones, gamma, total_steps, warmup_steps=0):
    marks = sorted(int(m) for m in milestones)
    if any(m <= 0 for m in marks):
        raise UserError(f"lr_milestones must be positive step numbers, got {list(milestones)}")
    lrs = []
    for step in range(total_steps):
        if step < warmup_steps:
            lrs.append(_warm(base_lr, step, warmup_steps))
        else:
            lrs.append(base_lr * gamma ** sum(1 for m in marks if step >= m))
    return lrs


def lr_schedule(schedule):
    """The per-step learning rates of ``schedule`` (:class:`~src.engine.sections.Schedule`)."""
    kind = str(schedule.lr_scheduler).lower()
    warmup = int(schedule.warmup_steps)
    if warmup >= schedule.total_steps:
        raise UserError(f"warmup_steps ({warmup}) must be below total_steps ({schedule.total_steps})")
    if kind == "cosine":
        return cosine_lr(schedule.lr, schedule.min_lr, schedule.total_steps, warmup)
    if kind == "multistep":
        return multistep_lr(schedule.lr, schedule.lr_milestones, float(schedule.lr_gamma), schedule.total_steps,
                            warmup)
    raise UserError(f"lr_scheduler must be 'cosine' or 'multistep', not '{kind}'")
