"""Errors caused by user input; entry scripts print them as one line and exit 2."""
from src.data.eval_sets import DatasetNotFoundError
from src.data.image_io import ImageError
from src.weights.checkpoint import CheckpointError
from src.weights.torch_pickle import UnsafeCheckpointError

USER_ERRORS = (CheckpointError, DatasetNotFoundError, ImageError, UnsafeCheckpointError,
               FileNotFoundError, ValueError)
