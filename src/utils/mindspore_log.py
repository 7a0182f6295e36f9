"""Quieting MindSpore's own logger around calls whose failures the project reports itself."""
import contextlib


@contextlib.contextmanager
def mindspore_log_level(level):
    """Raise MindSpore's logger to ``level`` (a ``logging`` level) inside the block, then restore it.

    Used where MindSpore logs what the entry scripts already report as one ``error:`` line: its
    warnings about missing device plugins while probing a device (``logging.ERROR``), and the
    CRITICAL line it logs before re-raising a failed checkpoint write (``logging.CRITICAL + 1``).
    A MindSpore without the private ``mindspore.log._get_logger`` is left as it is.
    """
    try:
        from mindspore.log import _get_logger  # pylint: disable=import-outside-toplevel
        logger = _get_logger()
    except (ImportError, AttributeError):
        logger = None
    if logger is None:
        yield
        return
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


#: MindSpore operators whose deprecation warning a user cannot act on: ``nn.Adam`` builds a
#: ``FusedSparseAdam`` inside; ``UniformReal`` draws QDrop's masks (its functional replacement draws
#: another random stream, which would change every dbdc_recon result)
INTERNAL_DEPRECATIONS = ("'FusedSparseAdam' is deprecated", "'UniformReal' is deprecated")


class _DropInternalDeprecations:  # pylint: disable=too-few-public-methods
    """logging filter: drops MindSpore's deprecation warnings of :data:`INTERNAL_DEPRECATIONS`."""

    @staticmethod
    def filter(record):
        message = record.getMessage()
        return not any(text in message for text in INTERNAL_DEPRECATIONS)


def quiet_internal_deprecations():
    """Install the filter on MindSpore's logger (once); a MindSpore without it is left as it is."""
    try:
        from mindspore.log import _get_logger  # pylint: disable=import-outside-toplevel
        logger = _get_logger()
    except (ImportError, AttributeError):
        return
    if logger is not None and not any(isinstance(f, _DropInternalDeprecations) for f in logger.filters):
        logger.addFilter(_DropInternalDeprecations())

