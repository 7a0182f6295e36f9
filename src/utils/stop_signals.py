"""Stop a long loop cleanly on Ctrl-C (SIGINT) or SIGTERM: the loop finishes its step, writes what lets
it continue, and exits; a second signal stops at once (the default behaviour).

Used by training (:mod:`src.engine.trainer`): the state written at the stop is an ordinary
resumable state, so ``--resume True`` continues exactly as after a scheduled save.
"""
import signal
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that turns the first SIGINT/SIGTERM into a request (``signum``, ``name``)
    the loop polls with :attr:`requested`; handlers are restored on exit. Outside the main thread
    (signals can only be handled there) or with ``enabled=False`` it installs nothing and never
    requests a stop."""

    def __init__(self, enabled=True, log=print):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.log, self.signum, self._previous = log, None, {}

    @property
    def requested(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum, _frame):
        if self.signum is not None:  # the second signal: stop now, as without this handler
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        self.log(f"{signal.Signals(signum).name} received: finishing this step and writing a resumable state "
                 "(send it again to stop at once, without one)")

    def _restore(self):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def __enter__(self):
        self.arm()
        return self

    def arm(self):
        """Install (again) the handlers. MindSpore's runtime sets its own C-level SIGINT/SIGTERM handler
        when it first compiles and runs a graph (it ends the process with SIGTERM, exit 143, keeping
        nothing); call this after such a step to take the signals back. MindSpore keeps SIGINT itself
        and answers it by sending SIGTERM to the process, so a Ctrl-C arrives here as SIGTERM."""
        if not self.enabled or self.signum is not None:
            return
        for sig in _SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def __exit__(self, *exc):
        self._restore()
        return False
