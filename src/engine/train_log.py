"""Training records written by rank 0: a plain log file, a CSV of validation rows, TensorBoard scalars.

- ``<stem>_train.log``: every progress line, timestamped (appended across resumes).
- ``<stem>_train_log.csv``: one row per validation: step, mean loss over the steps
  since the previous row whose update was applied, lr, training seconds so far,
  ``skipped`` (steps in that interval whose loss or gradient was not finite, so no
  update was made; their loss is not in the mean; ``nan`` when every step was
  skipped), PSNR per set. On resume rows after the resumed step are dropped, so the
  file always describes the run that produced the current weights; the running sums
  travel in the training state, so the first row after a resume equals the
  uninterrupted run's.
- ``tensorboard: True``: scalars ``train/loss``, ``train/skipped``, ``train/lr``,
  ``val/psnr_<set>`` in ``<ckpt_dir>/tensorboard`` (tensorboardX event files; view
  with ``tensorboard --logdir``).
"""
import csv
import math
import os
import time

from src.utils.atomic import atomic_target, open_append
from src.errors import UserError

CSV_COLUMNS = ("step", "loss", "lr", "seconds", "skipped")


class LossInterval:
    """Running sum of the finite losses and the count of skipped steps since the last report."""

    def __init__(self, state=None):
        state = state or {}
        self.loss_sum = float(state.get("loss_sum", 0.0))
        self.count = int(state.get("count", 0))
        self.skipped = int(state.get("skipped", 0))

    def add(self, loss):
        """Add one step: its loss, or None for a skipped (non-finite) step."""
        if loss is None:
            self.skipped += 1
        else:
            self.loss_sum += float(loss)
            self.count += 1

    def mean(self):
        """Mean loss of the applied steps (NaN when there were none)."""
        return self.loss_sum / self.count if self.count else float("nan")

    def describe(self):
        """``"loss 0.1234"``, ``"loss 0.1234 (2 of 10 steps skipped)"`` or ``"loss n/a (all 10 steps skipped)"``."""
        if not self.count:
            return f"loss n/a (all {self.skipped} steps skipped: non-finite loss or gradient)"
        text = f"loss {self.mean():.4f}"
        if self.skipped:
            text += f" ({self.skipped} of {self.count + self.skipped} steps skipped: non-finite loss or gradient)"
        return text

    def state(self):
        return {"loss_sum": self.loss_sum, "count": self.count, "skipped": self.skipped}


class TrainLogger:
    def __init__(self, out_dir, stem, val_names, resume_step=0, tensorboard=False, enabled=True, echo=print):
        self.enabled, self.echo = enabled, echo
        self.val_names = list(val_names)
        self.log_path = os.path.join(out_dir, f"{stem}_train.log")
        self.csv_path = os.path.join(out_dir, f"{stem}_train_log.csv")
        self.writer = None
        if not enabled:
            return
        self.header = list(CSV_COLUMNS) + [f"psnr_{n}" for n in self.val_names]
        rows = self._kept_rows(resume_step) if resume_step > 0 else []
        self._write_csv([self.header] + rows)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
            except ImportError:
                raise UserError("--tensorboard True needs tensorboardX: pip install tensorboardX") from None
            self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard"), purge_step=resume_step + 1)

    def _kept_rows(self, resume_step):
        """Rows up to ``resume_step``, re-ordered to the current header (empty where a column is new)."""
        if not os.path.isfile(self.csv_path):
            return []
        with open(self.csv_path, newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
        if not table:
            return []
        old = table[0]
        kept = []
        for row in table[1:]:
            if row and row[0].isdigit() and int(row[0]) <= resume_step:
                named = dict(zip(old, row))
                kept.append([named.get(col, "") for col in self.header])
        return kept

    def _write_csv(self, rows):
        with atomic_target(self.csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)

    def line(self, text):
        """Print ``text`` and append it to the log file."""
        if not self.enabled:
            return
        self.echo(text)
        with open_append(self.log_path) as fh:
            fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")

    def scalars(self, step, values):
        if self.writer is not None:
            for key, value in values.items():
                if not math.isnan(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def validation_row(self, step, interval, lr, seconds, scores):
        """Append the CSV row of a validation; ``interval``: the :class:`LossInterval` since the last row."""
        if not self.enabled:
            return
        with open_append(self.csv_path, newline="") as fh:
            csv.writer(fh).writerow([step, f"{interval.mean():.6f}", f"{lr:.3e}", f"{seconds:.0f}", interval.skipped]
                                    + [f"{scores[n]:.4f}" for n in self.val_names])
        self.scalars(step, {f"val/psnr_{n}": v for n, v in scores.items()})

    def close(self):
        if self.writer is not None:
            self.writer.close()
