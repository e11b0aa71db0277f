"""Networks shared by the methods."""
from fairlab.models.conv import KimBaselineNet, RagonesiEncoder
from fairlab.models.mine import MINE
from fairlab.models.mlp import MLP, baseline_network

__all__ = ["KimBaselineNet", "RagonesiEncoder", "MINE", "MLP", "baseline_network"]
