"""The cosine decay shared by the training schedule and PaC's bound learning rates."""
import math


def cosine_decay(start, end, fraction):
    """``end + (start - end) * (1 + cos(pi * fraction)) / 2``: ``start`` at ``fraction`` 0, ``end`` at 1
    (SGDR, Loshchilov & Hutter 2017, without restarts). Plain floats in the caller's unit
    (a learning rate); ``fraction`` outside [0, 1] is not clamped."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * fraction))


__all__ = ["cosine_decay"]
