"""Run a network in PyNative mode with forward hooks on some of its cells, then restore.

Hooks only fire in PyNative mode (MindSpore compiles them away in graph mode), so every
reader of intermediate tensors (calibration statistics, equalisation ranges, exported
output ranges, operation counts, PaC feature taps) switches mode, hooks its cells, runs
and restores both. This module is the one place that does it; it imports only MindSpore,
so ``src.models``, ``src.quantlib`` and ``src.export`` can all use it.
"""
from contextlib import contextmanager

import mindspore as ms


@contextmanager
def execution_mode(mode):
    """Run the block in MindSpore execution ``mode`` (``ms.PYNATIVE_MODE`` or ``ms.GRAPH_MODE``) and
    restore the previous mode afterwards (also on errors). Already in that mode: nothing is
    switched (so blocks nest)."""
    previous = ms.get_context("mode")
    if previous == mode:
        yield
        return
    ms.set_context(mode=mode)
    try:
        yield
    finally:
        ms.set_context(mode=previous)


def pynative_mode():
    """:func:`execution_mode` in PyNative mode (hooks fire, Python runs op by op)."""
    return execution_mode(ms.PYNATIVE_MODE)


def graph_mode():
    """:func:`execution_mode` in graph mode (each Cell call compiled once, then run as one graph)."""
    return execution_mode(ms.GRAPH_MODE)


@contextmanager
def forward_hooks(hooks, pre=False):
    """Register ``fn`` on ``cell`` for every ``(cell, fn)`` in ``hooks`` inside :func:`pynative_mode`;
    the hooks are removed and the mode restored when the block ends.

    ``pre=False``: ``fn(cell, inputs, output)`` after the cell's ``construct`` (a forward hook);
    ``pre=True``: ``fn(cell, inputs)`` before it (a forward pre-hook). ``inputs`` is the tuple of
    the cell's positional inputs (Tensors; NCHW for convolutions), ``output`` what it returned.
    """
    with pynative_mode():
        handles = []
        try:
            for cell, fn in hooks:
                handles.append(cell.register_forward_pre_hook(fn) if pre else cell.register_forward_hook(fn))
            yield
        finally:
            for handle in handles:
                handle.remove()


__all__ = ["execution_mode", "pynative_mode", "graph_mode", "forward_hooks"]
