"""Progress lines with an ETA for loops that log instead of drawing a bar (calibration, reconstruction,
sweeps): ``<label>: 120/500 (24%), 31 s, ETA 1.6 min[, <detail>]``, at most one every ``every_s`` seconds
and always for the last item, so a long phase is never silent and a short one prints one line."""
import time


def _duration(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class ProgressLog:
    """``update(done, detail="")`` after ``done`` of ``total`` items; ``log(str)`` gets the lines (None: silent)."""

    def __init__(self, label, total, log, every_s=10.0):
        self.label, self.total, self.log, self.every_s = label, max(1, int(total)), log, float(every_s)
        self.start = self.last = time.monotonic()

    def update(self, done, detail=""):
        now = time.monotonic()
        if self.log is None or (done < self.total and now - self.last < self.every_s):
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        tail = f", ETA {_duration(eta)}" if done < self.total else ""
        self.log(f"{self.label}: {done}/{self.total} ({100 * done // self.total}%), {_duration(elapsed)}{tail}"
                 + (f", {detail}" if detail else ""))
