import pytest
import torch

from model_core.flow import (
    add_noise,
    flow_matching_loss,
    guide,
    predict_x0,
    sample_euler_cfg,
    sample_training_timesteps,
    shift_timesteps,
)


def test_noise_and_x0_are_inverse():
    x0, noise = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 3, 4, 4)
    t = torch.tensor([0.3, 0.9])
    xt = add_noise(x0, noise, t)
    assert torch.allclose(predict_x0(xt, noise - x0, t), x0, atol=1e-6)


def test_per_frame_timesteps_broadcast_over_latent_frames():
    x0, noise = torch.zeros(1, 2, 3, 1, 1), torch.ones(1, 2, 3, 1, 1)
    xt = add_noise(x0, noise, torch.tensor([[0.0, 0.5, 1.0]]))
    assert xt[0, 0, :, 0, 0].tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (4, 3.0), (16, 5.0)])
def test_sampler_follows_a_straight_flow_exactly(steps, shift):
    """With the true velocity of a straight path, Euler lands on x0 for any schedule."""
    x0, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    out = sample_euler_cfg(lambda x, t, c: noise - x0, noise, steps, 1.0, shift)
    assert torch.allclose(out, x0, atol=1e-5)


def test_guidance_extrapolates_from_unconditional():
    x0c, x0u, noise = (
        torch.ones(1, 1, 1, 1, 1),
        torch.zeros(1, 1, 1, 1, 1),
        torch.zeros(1, 1, 1, 1, 1),
    )
    out = sample_euler_cfg(lambda x, t, c: noise - (x0c if c else x0u), noise, 4, 2.0)
    assert torch.allclose(out, 2 * x0c - x0u)


def test_audio_guidance_adds_the_audios_own_direction():
    """v = v_u + g (v_c - v_u) + a (v_c - v_no_audio): with straight flows to x0c (all
    conditions), x0u (none) and x0n (all but the audio), Euler lands on
    x0u + g (x0c - x0u) + a (x0c - x0n)."""
    x0c, x0u, x0n = (torch.full((1, 1, 1, 1, 1), v) for v in (1.0, 0.0, 0.5))
    noise = torch.zeros(1, 1, 1, 1, 1)
    out = sample_euler_cfg(
        lambda x, t, c: noise - (x0c if c else x0u),
        noise,
        4,
        2.0,
        audio_guidance=3.0,
        without_audio=lambda x, t: noise - x0n,
    )
    assert torch.allclose(out, x0u + 2 * (x0c - x0u) + 3 * (x0c - x0n))
    assert torch.allclose(guide(x0c, None, 5.0, x0n, 0.0), x0c)  # nothing asked: conditional
    with pytest.raises(ValueError, match="without_audio"):
        sample_euler_cfg(lambda x, t, c: x, noise, 1, 1.0, audio_guidance=1.0)


def test_shift_keeps_endpoints_and_moves_towards_noise():
    t = torch.linspace(0, 1, 11)
    s = shift_timesteps(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and torch.all(s[1:-1] > t[1:-1])


def test_loss_is_zero_for_the_true_velocity_and_positive_otherwise():
    x0, noise = torch.randn(3, 16, 2, 4, 4), torch.randn(3, 16, 2, 4, 4)
    assert flow_matching_loss(noise - x0, x0, noise) == 0
    assert flow_matching_loss(torch.zeros_like(x0), x0, noise) > 0


def test_training_timesteps_are_in_range_and_seeded():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = sample_training_timesteps(64, 2.0, g1), sample_training_timesteps(64, 2.0, g2)
    assert torch.equal(a, b) and a.min() > 0 and a.max() < 1
