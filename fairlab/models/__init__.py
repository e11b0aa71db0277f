"""Networks shared by the methods."""
from fairlab.models.mlp import MLP

__all__ = ["MLP"]
