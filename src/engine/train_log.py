"""Training records written by rank 0: a plain log file, a CSV of validation rows, TensorBoard scalars.

- ``<stem>_train.log``: every progress line, timestamped (appended across resumes).
- ``<stem>_train_log.csv``: one row per validation (step, mean loss, lr, seconds,
  PSNR per set); on resume rows after the resumed step are dropped, so the file
  always describes the run that produced the current weights.
- ``tensorboard: True``: scalars ``train/loss``, ``train/lr``, ``val/psnr_<set>``
  in ``<ckpt_dir>/tensorboard`` (tensorboardX event files; view with
  ``tensorboard --logdir``).
"""
import csv
import os
import time

from src.utils.atomic import atomic_target


class TrainLogger:
    def __init__(self, out_dir, stem, val_names, resume_step=0, tensorboard=False, enabled=True, echo=print):
        self.enabled, self.echo = enabled, echo
        self.val_names = list(val_names)
        self.log_path = os.path.join(out_dir, f"{stem}_train.log")
        self.csv_path = os.path.join(out_dir, f"{stem}_train_log.csv")
        self.writer = None
        if not enabled:
            return
        header = ["step", "loss", "lr", "seconds"] + [f"psnr_{n}" for n in self.val_names]
        rows = self._kept_rows(resume_step) if resume_step > 0 else []
        self._write_csv([header] + rows)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
            except ImportError:
                raise ValueError("--tensorboard True needs tensorboardX: pip install tensorboardX") from None
            self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard"), purge_step=resume_step + 1)

    def _kept_rows(self, resume_step):
        if not os.path.isfile(self.csv_path):
            return []
        with open(self.csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))[1:]
        return [r for r in rows if r and r[0].isdigit() and int(r[0]) <= resume_step]

    def _write_csv(self, rows):
        with atomic_target(self.csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)

    def line(self, text):
        """Print ``text`` and append it to the log file."""
        if not self.enabled:
            return
        self.echo(text)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")

    def scalars(self, step, values):
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def validation_row(self, step, loss, lr, seconds, scores):
        if not self.enabled:
            return
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow([step, f"{loss:.6f}", f"{lr:.3e}", f"{seconds:.0f}"]
                                    + [f"{scores[n]:.4f}" for n in self.val_names])
        self.scalars(step, {f"val/psnr_{n}": v for n, v in scores.items()})

    def close(self):
        if self.writer is not None:
            self.writer.close()
