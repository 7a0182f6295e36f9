"""The model a run builds, as every entry point reads it from the configuration: family, variant, scale and
the family options given."""
from dataclasses import dataclass

from src.models.registry import OPTION_KEYS


@dataclass(frozen=True)
class ModelChoice:
    """The model a run builds: registry name, variant, upscale factor (2, 3 or 4) and the
    builder options given in the configuration (``(key, value)`` pairs of
    the family option keys that are set, e.g. ``n_colors``)."""
    model: str
    variant: str
    scale: int
    options: tuple

    def option_dict(self):
        """The builder options as the keyword dict ``create_model`` / the loaders take."""
        return dict(self.options)


def model_choice(config):
    """The :class:`ModelChoice` of a loaded configuration."""
    options = tuple((k, config.get(k)) for k in OPTION_KEYS if config.get(k) is not None)
    return ModelChoice(config.model, config.variant, config.scale, options)
