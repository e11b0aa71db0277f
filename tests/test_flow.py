"""The flow inverts, its log-determinant is the Jacobian's, and the coupling is reusable on vectors."""
import math

import pytest
import torch
from torch import nn

from fairlab.models.flow import (
    AffineCoupling, InvertibleConv1x1, MultiScaleFlow, Squeeze, VectorFlow, compile_layers, join_latent,
    mlp_conditioner, partition_latent, standard_normal_log_prob,
)


def _randomise(module: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Move every parameter away from its (identity) initialisation, so the tests see a non-trivial map."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _tiny_flow(**kw):
    return MultiScaleFlow((3, 8, 8), levels=2, blocks=2, width=8, bias_dims=3, **kw)


def _autograd_logdet(f, x: torch.Tensor) -> torch.Tensor:
    """log |det J| of a single-sample map, with the full Jacobian from autograd."""
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view(1, *x.shape[1:])).flatten(), x.flatten())
    return torch.linalg.slogdet(jac).logabsdet


def test_multiscale_flow_inverts_float32():
    torch.manual_seed(0)
    flow = _randomise(_tiny_flow()).eval()
    x = torch.rand(16, 3, 8, 8)
    z, logdet = flow(x)
    assert z.shape == (16, 3 * 8 * 8) and logdet.shape == (16,)
    assert torch.allclose(flow.inverse(z), x, atol=1e-5)


def test_multiscale_flow_inverts_float64():
    torch.manual_seed(0)
    flow = _randomise(_tiny_flow()).double().eval()
    x = torch.rand(8, 3, 8, 8, dtype=torch.float64)
    z, _ = flow(x)
    assert (flow.inverse(z) - x).abs().max() < 1e-10


def test_published_shapes_partition_latent():
    flow = MultiScaleFlow((3, 32, 32), levels=3, blocks=1, width=4, bias_dims=6)
    assert flow.factored_shapes == [(6, 16, 16), (12, 8, 8)] and flow.final_shape == (48, 4, 4)
    x = torch.rand(2, 3, 32, 32)
    z, _ = flow(x)
    assert z.shape == (2, 3072)
    z_u, z_b = partition_latent(z, flow.bias_dims)
    assert z_u.shape == (2, 3066) and z_b.shape == (2, 6)
    assert torch.equal(join_latent(z_u, z_b), z)
    # z_b is the last entries of the deepest level's output
    assert torch.equal(z_b, z[:, -6:])


def test_flow_is_identity_up_to_permutations_at_init():
    # zeroed last layers: every coupling is the identity, so only the 1x1 rotations act (|det| = 1)
    flow = _tiny_flow()
    _, logdet = flow(torch.rand(4, 3, 8, 8))
    assert logdet.abs().max() < 1e-5


def test_flow_logdet_matches_autograd_jacobian():
    torch.manual_seed(0)
    flow = _randomise(_tiny_flow(), seed=1).double().eval()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        _, logdet = flow(x)
    expected = _autograd_logdet(lambda v: flow(v)[0], x)
    assert abs(logdet[0].item() - expected.item()) < 1e-6


def test_lu_conv_logdet_matches_slogdet():
    conv = _randomise(InvertibleConv1x1(6, torch.Generator().manual_seed(0)), seed=2).double()
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    y, logdet = conv(x)
    sign_logdet = torch.linalg.slogdet(conv.weight())
    assert torch.allclose(logdet, sign_logdet.logabsdet * 5 * 4, atol=1e-10)
    # and the 1x1 convolution is the matrix applied at every pixel
    assert torch.allclose(y, torch.einsum("oc,bchw->bohw", conv.weight(), x))
    assert torch.allclose(conv.inverse(y), x, atol=1e-10)


def test_squeeze_round_trip():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    y, logdet = Squeeze()(x)
    assert y.shape == (2, 12, 2, 3) and torch.equal(logdet, torch.zeros(2))
    assert torch.equal(Squeeze().inverse(y), x)
    # channel 4c + 2i + j holds pixel (2h + i, 2w + j) of channel c
    assert y[0, 4 * 1 + 2 * 1 + 0, 1, 2] == x[0, 1, 3, 4]


def test_coupling_scale_range_and_vector_form():
    torch.manual_seed(0)
    coupling = _randomise(AffineCoupling(mlp_conditioner(3, 2 * 4, width=16), size_a=3), scale=3.0).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    y, logdet = coupling(x)
    assert torch.equal(y[:, :3], x[:, :3])  # the conditioning half passes through
    # scale = sigmoid(h) + 0.5 lies in [0.5, 1.5] (in float64 the sigmoid of a large h rounds to exactly 0 or 1, so
    # the ends are reached: some BLAS kernels round the conditioner there): each of the 4 transformed entries adds
    # log scale in that range. The bounds in float64, as the log-determinant is.
    assert (logdet >= 4 * math.log(0.5)).all() and (logdet <= 4 * math.log(1.5)).all(), logdet
    assert (coupling.inverse(y) - x).abs().max() < 1e-12
    expected = _autograd_logdet(lambda v: coupling(v)[0], x[:1])
    assert abs(logdet[0].item() - expected.item()) < 1e-10


def test_vector_flow_inverts_and_logdet():
    torch.manual_seed(0)
    flow = _randomise(VectorFlow(7, blocks=4, width=16, bias_dims=2), seed=3).double()
    x = torch.randn(6, 7, dtype=torch.float64)
    z, logdet = flow(x)
    assert (flow.inverse(z) - x).abs().max() < 1e-10
    expected = _autograd_logdet(lambda v: flow(v)[0], x[:1])
    assert abs(logdet[0].item() - expected.item()) < 1e-8


def test_coupling_keeps_float32_stream_under_bf16_autocast():
    flow = _randomise(_tiny_flow()).eval()
    x = torch.rand(4, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, logdet = flow(x)
    assert z.dtype == torch.float32 and logdet.dtype == torch.float32
    # bf16 only in the conditioner: the result is close to the float32 one
    z32, _ = flow(x)
    assert (z - z32).abs().max() < 0.1


def test_standard_normal_log_prob():
    z = torch.zeros(2, 3, 4)
    expected = -0.5 * 12 * torch.log(torch.tensor(2 * torch.pi))
    assert torch.allclose(standard_normal_log_prob(z), expected.expand(2))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="even"):
        Squeeze()(torch.rand(1, 3, 5, 4))
    with pytest.raises(ValueError, match="bias_dims"):
        MultiScaleFlow((3, 8, 8), levels=2, blocks=1, width=4, bias_dims=0)


def test_compiled_layers_compute_what_the_eager_ones_do_and_can_be_undone():
    flow = _randomise(MultiScaleFlow((3, 8, 8), levels=2, blocks=2, width=8, bias_dims=3))
    x = torch.rand(4, 3, 8, 8)
    z, logdet = flow(x)
    compile_layers(flow)
    compiled = [m for m in flow.modules() if m._compiled_call_impl is not None]
    assert len(compiled) == 8  # 2 levels x 2 blocks x (1x1 convolution, coupling)
    z_c, logdet_c = flow(x)
    assert torch.allclose(z_c, z, atol=1e-5) and torch.allclose(logdet_c, logdet, atol=1e-4)
    compile_layers(flow, enabled=False)
    assert all(m._compiled_call_impl is None for m in flow.modules())
