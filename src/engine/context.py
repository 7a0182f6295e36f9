"""MindSpore execution context for the entry scripts."""
import logging

import mindspore as ms

from src.utils.mindspore_log import mindspore_log_level, quiet_internal_deprecations
from src.errors import UserError

_MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def device_available(target):
    """Whether this MindSpore build can run on ``target`` ("CPU", "GPU" or "Ascend").

    Asks ``mindspore.device_context.<target>.is_available()`` (which only reads what the
    installed package loaded; nothing is initialised) with MindSpore's own warnings about
    missing plugins silenced, so a refusal stays one line.
    """
    from mindspore import device_context  # pylint: disable=import-outside-toplevel
    module = {"CPU": device_context.cpu, "GPU": device_context.gpu, "ASCEND": device_context.ascend}[target.upper()]
    with mindspore_log_level(logging.ERROR):
        return bool(module.is_available())


def init_context(device_target="CPU", mode="graph", device_id=0):
    """Set MindSpore's mode and device; ``ValueError`` (one line) for a mode or device this build cannot use.

    ``device_target``: CPU, GPU or Ascend (any case); a target the installed MindSpore
    package was not built for (e.g. GPU on the CPU wheel) is refused before anything runs.
    """
    quiet_internal_deprecations()
    mode_key = str(mode).lower()
    if mode_key not in _MODES:
        raise UserError(f"mode must be 'graph' or 'pynative', not '{mode}'")
    target = str(device_target).upper()
    if target not in ("CPU", "GPU", "ASCEND"):
        raise UserError(f"device_target must be CPU, GPU or Ascend, not '{device_target}'")
    name = "Ascend" if target == "ASCEND" else target
    if not device_available(target):
        usable = [t for t in ("CPU", "GPU", "Ascend") if t != name and device_available(t)]
        raise UserError(f"--device_target {device_target}: this MindSpore {ms.__version__} package has no {name} "
                         f"support (usable here: {', '.join(usable) or 'none'}); install the MindSpore {name} "
                         f"package or pass --device_target {usable[0] if usable else 'CPU'}")
    ms.set_context(mode=_MODES[mode_key])
    ms.set_device(name, device_id)
