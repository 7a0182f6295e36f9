"""Shared body of the entry scripts: config -> checks -> execution context -> engine, user errors as one line."""
import sys
import traceback

from model_utils.config import DEFAULT_CONFIG, get_config
from model_utils.device_adapter import device_info
from model_utils.moxing_adapter import moxing_wrapper
from src.errors import USER_ERRORS, Interrupted, error_line, is_user_error, print_user_error


def run_entry(argv, entry, description, load_engine, extra_errors=(), outputs=None, needs=True):
    """Parse ``argv``, check outputs, set up MindSpore, run ``load_engine()(config)``; exit code 2 on a user error.

    ``entry`` (``"train"``, ``"eval"``, ``"export"``, ``"infer"``) picks the sections its ``--help``
    lists and its old option names (:mod:`model_utils.options`); ``needs=False`` for scripts that reuse
    its sections with their own method lists (no refusal of options that eval.py alone would not read).

    ``load_engine`` imports the engine lazily, so MindSpore loads only after the
    runtime defaults (``import model_utils``) and after ``--help`` is handled.
    ``outputs(config, resolve)`` lists the ``(kind, option, path)`` the run writes
    (kind ``"folder"`` or ``"file"``; ``resolve`` maps a configured path as the engines
    do); each is checked before any work (:mod:`model_utils.outputs`). Every user error
    (:func:`src.errors.is_user_error`: a ``UserError`` such as a bad config file, or an ``OSError`` about a
    file such as a full disk; and ``extra_errors``) is printed as one line ``error: ...``
    (``src.errors.error_line``) with exit code 2; anything else, a plain ``ValueError`` included, is a
    defect: its traceback, then a line saying it is a bug to report, exit code 1.
    """
    try:
        config = get_config(argv, description=description, schema_path=DEFAULT_CONFIG, entry=entry, needs=needs)
    except USER_ERRORS as exc:  # no or bad config file (ConfigError), an unreadable one
        return print_user_error(exc)
    except SystemExit as exc:  # a bad option or value (already printed as one line), or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
        init_context(config.device_target, config.mode, device_info(config)["device_id"])
        if outputs is not None:
            from model_utils.outputs import check_outputs  # pylint: disable=import-outside-toplevel
            from src.paths import resolve_path  # pylint: disable=import-outside-toplevel
            check_outputs(outputs(config, lambda path: resolve_path(config, path)))
        from src.utils.atomic import keeping_results  # pylint: disable=import-outside-toplevel
        engine = moxing_wrapper(config)(load_engine())  # ModelArts: OBS copies around the run, when enabled
        if entry == "train":  # the run's own files: --resume continues them, --overwrite replaces them
            engine(config)
        else:
            with keeping_results():
                engine(config)
    except Interrupted as exc:  # Ctrl-C / SIGTERM, after writing what lets the run continue
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # pylint: disable=broad-except
        if isinstance(exc, tuple(extra_errors)) or is_user_error(exc):
            print(f"error: {error_line(exc)}", file=sys.stderr)
            return 2
        traceback.print_exc()  # not a user error: a defect, shown with its traceback
        print(f"this is a bug in {entry}.py, not a problem with your input: please report it with the command and "
              "the traceback above", file=sys.stderr)
        return 1
    return 0
