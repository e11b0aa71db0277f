"""Normalising flows, written out by hand: Glow-style image flow and a coupling flow for flat vectors.

A flow is an invertible map f with a tractable Jacobian. By the change of variables,

    log p_X(x) = log p_Z(f(x)) + log |det df/dx|,

so every layer returns its output *and* its log-determinant, and the log-determinants of a stack add up. Every layer
here has the same interface:

    forward(x) -> (y, logdet)      logdet: (B,) the log |det dy/dx| of each sample
    inverse(y) -> x

The pieces:

- ``Squeeze``: (C, H, W) -> (4C, H/2, W/2), a reshuffle of the pixels (log-determinant 0).
- ``InvertibleConv1x1``: a learnt C x C channel mixing at every pixel, W = P L (U + diag(s)) with P a fixed
  permutation, L unit lower-triangular, U strictly upper-triangular. det W = prod(s), so log |det| = H W sum log|s|
  costs O(C) instead of O(C^3).
- ``AffineCoupling``: split the input in two parts (a, b) along a dimension; a conditioner network reads a and
  gives (shift, h); b <- b * scale + shift with scale = sigmoid(h) + 0.5 in (0.5, 1.5). The Jacobian is triangular,
  log |det| = sum log scale. The conditioner's last layer starts at zero, so scale = 1 and shift = 0: every coupling
  is the identity at initialisation and a deep stack trains stably without ActNorm. The same class works on images
  (split channels, conv conditioner) and on flat vectors (split features, MLP conditioner).
- ``MultiScaleFlow``: the cFlow of null-sampling. L levels of [squeeze, K x (1x1 conv, coupling)], half the channels
  factored out after every level but the last; z is all factored-out parts and the last level's output, flattened
  and concatenated in that order, so z has the size of x and its *last* entries come from the deepest level.
- ``VectorFlow``: K x (fixed permutation, coupling) on vectors: for tabular data, or for an invertible module on
  a latent vector.

``partition_latent`` / ``join_latent`` split z into [z_u, z_b] (z_b the last ``bias_dims`` entries).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AffineCoupling",
    "FlowSequential",
    "InvertibleConv1x1",
    "MultiScaleFlow",
    "Permutation",
    "Squeeze",
    "VectorFlow",
    "compile_layers",
    "conv_conditioner",
    "join_latent",
    "mlp_conditioner",
    "partition_latent",
    "standard_normal_log_prob",
]


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample, summed over every non-batch dimension: (B, ...) -> (B,)."""
    return -0.5 * (z.float().pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------------
class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels. A permutation: log-determinant 0."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs an even height and width, got {h}x{w}.")
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b, dtype=torch.float32)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        return y.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class InvertibleConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution with the LU parametrisation, W = P L (U + diag(sign * exp(log_s))).

    Initialised at a random rotation (QR of a Gaussian matrix), as in Glow. P and the signs are fixed buffers; L, U
    and log_s are learnt. The mixing runs in float32 even under bf16 autocast: it is cheap (C is small) and the flow's
    invertibility should not depend on bf16 rounding.
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(diag.abs().log().float())
        self.channels = channels

    def weight(self) -> torch.Tensor:
        """The C x C matrix W = P L (U + diag(s)) (its dtype follows the parameters)."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_s.exp())
        return self.permutation @ lower @ upper

    def _mix(self, x: torch.Tensor, invert: bool) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            matrix = torch.linalg.inv(self.weight()) if invert else self.weight()
            return F.conv2d(x.to(matrix.dtype), matrix[:, :, None, None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # det W = det P * det L * det(U + diag(s)) = +-1 * 1 * prod(s): log|det| needs only log_s
        logdet = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return self._mix(x, invert=False), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._mix(y, invert=True)


class Permutation(nn.Module):
    """A fixed random permutation of the features along ``dim`` (log-determinant 0): mixes the coupling halves."""

    def __init__(self, size: int, dim: int = 1, generator: torch.Generator | None = None):
        super().__init__()
        order = torch.randperm(size, generator=generator)
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.index_select(self.dim, self.order), x.new_zeros(x.shape[0], dtype=torch.float32)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(self.dim, self.inverse_order)


class AffineCoupling(nn.Module):
    """Affine coupling over a split of ``dim``: (a, b) -> (a, b * scale(a) + shift(a)), scale = sigmoid(h) + 0.5.

    Args:
        conditioner: maps a, of shape (B, size_a, ...), to (B, 2 * size_b, ...): the first size_b entries along
            ``dim`` are the shift, the last size_b the pre-scale h. Build one with ``conv_conditioner`` (images) or
            ``mlp_conditioner`` (vectors); both zero their last layer so the coupling starts as the identity.
        size_a: how many entries along ``dim`` the conditioner reads (the rest are transformed).
        dim: the dimension that is split (1: channels of an image, features of a vector).

    The conditioner may run in bf16 under autocast; shift and scale are taken in float32, so the transformed stream
    and the log-determinant stay float32 (float64 inputs stay float64).
    """

    def __init__(self, conditioner: nn.Module, size_a: int, dim: int = 1):
        super().__init__()
        self.conditioner, self.size_a, self.dim = conditioner, size_a, dim

    def _shift_scale(self, a: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conditioner(a).to(torch.promote_types(dtype, torch.float32))
        shift, pre_scale = h.chunk(2, self.dim)
        return shift, torch.sigmoid(pre_scale) + 0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x.split([self.size_a, x.shape[self.dim] - self.size_a], self.dim)
        shift, scale = self._shift_scale(a, x.dtype)
        y_b = b * scale + shift
        logdet = scale.log().flatten(1).sum(1)  # triangular Jacobian: the diagonal is (1, ..., 1, scale)
        return torch.cat([a, y_b.to(x.dtype)], self.dim), logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        a, y_b = y.split([self.size_a, y.shape[self.dim] - self.size_a], self.dim)
        shift, scale = self._shift_scale(a, y.dtype)
        return torch.cat([a, ((y_b - shift) / scale).to(y.dtype)], self.dim)


def _zero_last(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def conv_conditioner(in_channels: int, out_channels: int, width: int = 512) -> nn.Sequential:
    """The null-sampling coupling network: conv3x3 -> width -> ReLU -> conv1x1 width -> ReLU -> conv3x3 (zeroed)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 1), nn.ReLU(),
        _zero_last(nn.Conv2d(width, out_channels, 3, padding=1)),
    )


def mlp_conditioner(in_features: int, out_features: int, width: int = 256, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width``, then a zeroed linear layer: the coupling network for vectors."""
    sizes = [in_features] + [width] * depth
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(_zero_last(nn.Linear(sizes[-1], out_features)))
    return nn.Sequential(*layers)


class FlowSequential(nn.ModuleList):
    """Layers applied in order; log-determinants add up. ``inverse`` runs them backwards."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32))
        for layer in self:
            x, step = layer(x)
            logdet = logdet + step
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self):
            y = layer.inverse(y)
        return y


# ---------------------------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------------------------
class MultiScaleFlow(nn.Module):
    """The Glow-style multi-scale flow of null-sampling (cFlow): x (B, C, H, W) -> z (B, C * H * W).

    Per level: squeeze, then ``blocks`` x [invertible 1x1 convolution, affine coupling on half the channels];
    after every level but the last, ``factor_out`` of the channels leave the flow as part of z. The published
    Coloured MNIST flow: 3 levels, 24 blocks, width 512, factor_out 0.5 (3x32x32 -> factored 6x16x16 and 12x8x8,
    final 48x4x4; 1536 + 768 + 768 = 3072 = the size of x). No ActNorm: the couplings start as the identity.

    ``bias_dims``: the size of z_b, the last entries of z (which come from the deepest level).
    """

    def __init__(
        self, in_shape: Sequence[int] = (3, 32, 32), *, levels: int = 3, blocks: int = 24, width: int = 512,
        factor_out: float = 0.5, bias_dims: int = 6, seed: int = 0,
    ):
        super().__init__()
        channels, height, width_px = in_shape
        generator = torch.Generator().manual_seed(seed)  # the 1x1 convolutions' initial rotations
        self.levels = nn.ModuleList()
        self.squeeze = Squeeze()
        self.factored_shapes: list[tuple[int, int, int]] = []
        for level in range(levels):
            channels, height, width_px = 4 * channels, height // 2, width_px // 2
            layers = []
            for _ in range(blocks):
                half = channels // 2
                layers += [InvertibleConv1x1(channels, generator),
                           AffineCoupling(conv_conditioner(half, 2 * (channels - half), width), half)]
            self.levels.append(FlowSequential(layers))
            if level < levels - 1:
                out = int(round(channels * factor_out))
                self.factored_shapes.append((out, height, width_px))
                channels -= out
        self.final_shape = (channels, height, width_px)
        self.in_shape = tuple(in_shape)
        self.latent_dim = math.prod(in_shape)
        if not 0 < bias_dims < math.prod(self.final_shape):
            raise ValueError(f"bias_dims must lie in (0, {math.prod(self.final_shape)}) (the deepest level's size).")
        self.bias_dims = bias_dims

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> (z (B, D), logdet (B,))."""
        parts, logdet = [], x.new_zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32))
        h = x
        for level, layers in enumerate(self.levels):
            h, _ = self.squeeze(h)
            h, step = layers(h)
            logdet = logdet + step
            if level < len(self.levels) - 1:
                out = self.factored_shapes[level][0]
                z_level, h = h.split([out, h.shape[1] - out], 1)
                parts.append(z_level.flatten(1))
        parts.append(h.flatten(1))
        return torch.cat(parts, 1), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> x (B, C, H, W)."""
        sizes = [math.prod(s) for s in self.factored_shapes] + [math.prod(self.final_shape)]
        pieces = z.split(sizes, 1)
        h = pieces[-1].reshape(len(z), *self.final_shape)
        for level in reversed(range(len(self.levels))):
            if level < len(self.levels) - 1:
                h = torch.cat([pieces[level].reshape(len(z), *self.factored_shapes[level]), h], 1)
            h = self.levels[level].inverse(h)
            h = self.squeeze.inverse(h)
        return h


class VectorFlow(nn.Module):
    """A coupling flow on flat vectors: ``blocks`` x [fixed random permutation, affine coupling (MLP conditioner)].

    (B, dim) -> (z (B, dim), logdet (B,)). ``bias_dims`` as in ``MultiScaleFlow`` (the last entries of z).
    """

    def __init__(self, dim: int, *, blocks: int = 8, width: int = 256, depth: int = 2, bias_dims: int = 1,
                 seed: int = 0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling flow needs at least 2 features, got {dim}.")
        generator = torch.Generator().manual_seed(seed)
        half = dim // 2
        layers = []
        for _ in range(blocks):
            layers += [Permutation(dim, 1, generator),
                       AffineCoupling(mlp_conditioner(half, 2 * (dim - half), width, depth), half)]
        self.layers = FlowSequential(layers)
        self.in_shape, self.latent_dim = (dim,), dim
        if not 0 < bias_dims < dim:
            raise ValueError(f"bias_dims must lie in (0, {dim}).")
        self.bias_dims = bias_dims

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layers(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers.inverse(z)


def compile_layers(flow: nn.Module, enabled: bool = True) -> None:
    """``torch.compile`` each coupling and 1x1 convolution of ``flow`` on its own (regional compilation), or undo it.

    The blocks of a level have the same shapes, so they share their compiled code: compiling costs a few small
    graphs, not one graph of the whole unrolled flow (the published cFlow's loss, forward and backward, compiled
    from an empty cache on one CPU thread: 50 s against 117 s; ``benchmarks/compile_cflow.py``). ``enabled=False``
    puts the plain modules back, so that evaluation runs eagerly instead of compiling again for every new batch
    size. ``inverse`` is never compiled.
    """
    for layer in flow.modules():
        if isinstance(layer, (AffineCoupling, InvertibleConv1x1)):
            if enabled:
                layer.compile()
            else:
                layer._compiled_call_impl = None  # what nn.Module.compile set


# ---------------------------------------------------------------------------------------------------------------
# The partition z = [z_u, z_b]
# ---------------------------------------------------------------------------------------------------------------
def partition_latent(z: torch.Tensor, bias_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) -> (z_u (B, D - bias_dims), z_b (B, bias_dims)): z_b is the last ``bias_dims`` entries."""
    return z.split([z.shape[1] - bias_dims, bias_dims], 1)


def join_latent(z_u: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """The inverse of ``partition_latent``: [z_u, z_b] -> (B, D)."""
    return torch.cat([z_u, z_b], 1)
