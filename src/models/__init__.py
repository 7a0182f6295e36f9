"""SR model families; see registry.py for the table of models and variants."""
from src.models.registry import create_model, create_model_from_config, list_models, list_variants

__all__ = ["create_model", "create_model_from_config", "list_models", "list_variants"]
