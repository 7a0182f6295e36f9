"""Shared body of the entry scripts: config -> execution context -> engine, user errors as one line."""
import sys

from model_utils.config import get_config
from model_utils.device_adapter import device_info


def run_entry(argv, description, load_engine, extra_errors=()):
    """Parse ``argv``, set up MindSpore, run ``load_engine()(config)``; exit code 2 on a user error.

    ``load_engine`` imports the engine lazily, so MindSpore loads only after the
    runtime defaults (``import model_utils``) and after ``--help`` is handled.
    """
    config = get_config(argv, description=description)
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    from src.errors import USER_ERRORS  # pylint: disable=import-outside-toplevel
    try:
        init_context(config.device_target, config.mode, device_info(config)["device_id"])
        load_engine()(config)
    except USER_ERRORS + tuple(extra_errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
