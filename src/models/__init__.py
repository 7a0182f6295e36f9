"""SR model families, one file each, registered once (src/models/family.py); registry.py builds them.

Every network is an :class:`~src.models.base.SRNet` carrying a :class:`~src.models.base.ModelSpec`.
"""
from src.models.base import ModelSpec, SRNet
from src.models.registry import create_model, list_models, list_variants, to_deploy

__all__ = ["ModelSpec", "SRNet", "create_model", "list_models", "list_variants",
           "to_deploy"]
