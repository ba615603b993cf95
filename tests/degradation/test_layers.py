"""Every flow layer: inverse(forward(x)) == x, logdets cancel, logdet == slogdet of the autograd Jacobian."""

from __future__ import annotations

import pytest
import torch

from unpaired_sr.degradation.flow import DegradationFlow
from unpaired_sr.degradation.layers import (
    ActNorm,
    ConditionalAffineCoupling,
    ConditionalGaussianize,
    InvertibleConv1x1,
    Squeeze,
)

torch.manual_seed(0)
COND_CHANNELS = 3


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter off its identity initialisation so the test sees a non-trivial map."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def layers():
    return {
        "actnorm": ActNorm(4),
        "invconv": InvertibleConv1x1(4),
        "coupling": ConditionalAffineCoupling(4, COND_CHANNELS, hidden_channels=8, scale_bound=1.0),
        "coupling_odd": ConditionalAffineCoupling(5, COND_CHANNELS, hidden_channels=8),
        "split_prior": ConditionalGaussianize(4, 2, COND_CHANNELS, hidden_channels=8),
        "final_prior": ConditionalGaussianize(4, 0, COND_CHANNELS, hidden_channels=8),
        "coupling_blind": ConditionalAffineCoupling(4, COND_CHANNELS, hidden_channels=8, sees_image=False),
        "split_prior_blind": ConditionalGaussianize(4, 2, COND_CHANNELS, hidden_channels=8, sees_image=False),
        "squeeze": Squeeze(),
    }


def make_input(name: str, batch: int = 2):
    channels = 5 if name == "coupling_odd" else 4
    x = torch.randn(batch, channels, 4, 4, dtype=torch.float64)
    cond = torch.randn(batch, COND_CHANNELS, 4, 4, dtype=torch.float64)
    return x, cond


@pytest.mark.parametrize("name", list(layers()))
def test_inverse_and_logdets_cancel(name):
    layer = randomize(layers()[name].double()).eval()
    x, cond = make_input(name)
    y, logdet = layer(x, cond)
    x_again, inverse_logdet = layer.inverse(y, cond)
    assert logdet.shape == (2,)
    torch.testing.assert_close(x_again, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(logdet + inverse_logdet, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(layers()))
def test_logdet_matches_autograd_jacobian(name):
    layer = randomize(layers()[name].double()).eval()
    x, cond = make_input(name, batch=1)

    def flat_forward(flat: torch.Tensor) -> torch.Tensor:
        return layer(flat.reshape(x.shape), cond)[0].reshape(-1)

    jacobian = torch.autograd.functional.jacobian(flat_forward, x.reshape(-1))
    sign, expected = torch.linalg.slogdet(jacobian)
    assert sign != 0
    torch.testing.assert_close(layer(x, cond)[1][0], expected, rtol=1e-9, atol=1e-9)


def test_whole_flow_logdet_matches_autograd_jacobian():
    flow = randomize(DegradationFlow(num_levels=2, num_steps=2, hidden_channels=8, cond_channels=4, cond_blocks=1))
    flow = flow.double().eval()
    image = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    cond = [c.detach() for c in flow.condition(image)]  # the condition is held fixed, as in a conditional flow

    def flat_encode(flat: torch.Tensor) -> torch.Tensor:
        latents, _ = flow.encode(flat.reshape(image.shape), cond)
        return torch.cat([z.reshape(-1) for z in latents])

    jacobian = torch.autograd.functional.jacobian(flat_encode, image.reshape(-1))
    assert jacobian.shape == (192, 192)
    _, expected = torch.linalg.slogdet(jacobian)
    torch.testing.assert_close(flow.encode(image, cond)[1][0], expected, rtol=1e-9, atol=1e-8)


def test_a_flow_that_does_not_see_the_image_is_affine_in_it_given_the_condition():
    kwargs = dict(num_levels=2, num_steps=2, hidden_channels=8, cond_channels=4, cond_blocks=1)
    image = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    other = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    for sees_image in (True, False):
        flow = randomize(DegradationFlow(**kwargs, sees_image=sees_image)).double().eval()
        cond = [c.detach() for c in flow.condition(image)]

        def flat_encode(flat: torch.Tensor, flow=flow, cond=cond) -> torch.Tensor:
            latents, _ = flow.encode(flat.reshape(image.shape), cond)
            return torch.cat([z.reshape(-1) for z in latents])

        at_image = torch.autograd.functional.jacobian(flat_encode, image.reshape(-1))
        at_other = torch.autograd.functional.jacobian(flat_encode, other.reshape(-1))
        # Glow-style couplings make the Jacobian depend on the image; blind ones do not.
        assert torch.allclose(at_image, at_other, atol=1e-12) == (not sees_image)


def test_actnorm_initializes_from_data_once_and_survives_state_dict():
    layer = ActNorm(3)
    x = torch.randn(8, 3, 5, 5) * torch.tensor([1.0, 3.0, 0.5])[None, :, None, None] + 2.0
    y, _ = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)
    reloaded = ActNorm(3)
    reloaded.load_state_dict(layer.state_dict())
    assert bool(reloaded.initialized)
    other = torch.randn(8, 3, 5, 5) * 7
    torch.testing.assert_close(reloaded(other)[0], layer(other)[0])  # no second initialisation


def test_invconv_state_survives_state_dict():
    layer = InvertibleConv1x1(6, generator=torch.Generator().manual_seed(3))
    reloaded = InvertibleConv1x1(6, generator=torch.Generator().manual_seed(4))
    reloaded.load_state_dict(layer.state_dict())
    torch.testing.assert_close(reloaded.weight(), layer.weight(), rtol=0, atol=0)


def test_new_coupling_is_identity():
    layer = ConditionalAffineCoupling(4, COND_CHANNELS, hidden_channels=8)
    x, cond = make_input("coupling")
    y, logdet = layer(x.float(), cond.float())
    torch.testing.assert_close(y, x.float())
    assert torch.all(logdet == 0)


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match=r"ActNorm expects \(B, 4, H, W\)"):
        ActNorm(4)(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="InvertibleConv1x1 expects"):
        InvertibleConv1x1(4)(torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match="coupling expects a condition"):
        ConditionalAffineCoupling(4, 3, 8)(torch.randn(1, 4, 4, 4), torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="coupling expects a condition"):
        ConditionalAffineCoupling(4, 3, 8)(torch.randn(1, 4, 4, 4), None)
    with pytest.raises(ValueError, match="even H and W"):
        Squeeze()(torch.randn(1, 3, 5, 4))
    flow = DegradationFlow(num_levels=3, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=1)
    with pytest.raises(ValueError, match="must be a multiple of 8"):
        flow.encode(torch.rand(1, 3, 12, 16))
    with pytest.raises(ValueError, match=r"expected images \(B, 3, H, W\)"):
        flow.encode(torch.rand(1, 1, 16, 16))


def test_invconv_mixes_channels_at_full_precision_under_autocast():
    # Training with train.amp runs the flow under bf16 autocast, which would run a 1x1 convolution in bf16 (and
    # cuDNN runs float32 ones in TF32): forward and inverse would then disagree by ~1e-3 and the logdet would
    # not be the map's. The channel mixing stays float32 whatever the surrounding precision.
    layer = randomize(InvertibleConv1x1(8)).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = layer(x)
        x_again, _ = layer.inverse(y)
    assert y.dtype == torch.float32 and x_again.dtype == torch.float32
    assert (x_again - x).abs().max() < 1e-5
    exact = torch.einsum("oc,bchw->bohw", layer.weight(torch.float64), x.double())
    assert (y.double() - exact).abs().max() < 1e-5
