"""MindSpore execution context for the entry scripts."""
import mindspore as ms

_MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def init_context(device_target="CPU", mode="graph", device_id=0):
    mode_key = str(mode).lower()
    if mode_key not in _MODES:
        raise ValueError(f"mode must be 'graph' or 'pynative', not '{mode}'")
    target = str(device_target).upper()
    if target not in ("CPU", "GPU", "ASCEND"):
        raise ValueError(f"device_target must be CPU, GPU or Ascend, not '{device_target}'")
    ms.set_context(mode=_MODES[mode_key])
    ms.set_device("Ascend" if target == "ASCEND" else target, device_id)
