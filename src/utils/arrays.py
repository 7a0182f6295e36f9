"""Numpy views of MindSpore values for exact host-side arithmetic."""
import numpy as np


def as_float64(value):
    """A Parameter, Tensor or array as a float64 numpy array (for exact re-parameterisation and
    equalisation arithmetic); the shape is kept."""
    array = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    return array.astype(np.float64)
