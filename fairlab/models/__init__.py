"""Networks shared by the methods."""
from fairlab.models.conv import DownstreamCNN, KimBaselineNet, RagonesiEncoder
from fairlab.models.mine import MINE
from fairlab.models.mlp import MLP, baseline_network

__all__ = ["DownstreamCNN", "KimBaselineNet", "RagonesiEncoder", "MINE", "MLP", "baseline_network"]
