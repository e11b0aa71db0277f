"""Networks shared by the methods."""
from fairlab.models.conv import KimEncoder
from fairlab.models.mine import MINE
from fairlab.models.mlp import MLP, baseline_network

__all__ = ["KimEncoder", "MINE", "MLP", "baseline_network"]
