"""The recipe's training aids: motion-weighted losses, recoloured VAE clips and noisy stream
context."""

import torch

from model_core.train.objectives.conditioning import ChunkRollout, LPMConditioner
from model_core.train.objectives.vae import motion_weights, recolour, weighted_mean


def still_clip_with_a_blinking_patch() -> torch.Tensor:
    x = torch.zeros(1, 3, 5, 8, 8)
    x[:, :, 1::2, 2:4, 2:4] = 1.0  # on in frames 1 and 3, off in 0, 2, 4
    return x


def test_what_moves_weighs_more_than_what_stays_still():
    w = motion_weights(still_clip_with_a_blinking_patch(), strength=2.0)
    assert w.shape == (1, 1, 5, 8, 8)
    patch, still = w[0, 0, :, 2:4, 2:4], w[0, 0, :, 5:, 5:]
    assert torch.all(still == 1.0)
    assert torch.all(patch > 2.0)  # every frame of the patch changes to or from a neighbour


def test_no_weights_without_strength_or_motion():
    assert motion_weights(still_clip_with_a_blinking_patch(), strength=0.0) is None
    assert motion_weights(torch.rand(1, 3, 1, 8, 8), strength=2.0) is None
    w = motion_weights(torch.ones(2, 3, 4, 8, 8), strength=2.0)
    assert torch.allclose(w, torch.ones_like(w))  # a frozen clip: plain mean


def test_weighted_mean_is_a_mean():
    err = torch.rand(2, 3, 5, 8, 8)
    assert torch.allclose(weighted_mean(err, None), err.mean())
    assert torch.allclose(weighted_mean(err, torch.full((2, 1, 5, 8, 8), 3.0)), err.mean())
    w = motion_weights(still_clip_with_a_blinking_patch(), 2.0)
    focused = torch.zeros(1, 3, 5, 8, 8)
    focused[:, :, :, 2:4, 2:4] = 1.0  # error only where it moves
    assert weighted_mean(focused, w) > focused.mean() * 2


def test_recolour_permutes_and_mirrors_channels_per_clip():
    torch.manual_seed(0)
    video = torch.rand(16, 3, 2, 4, 4) * 2 - 1
    assert recolour(video, 0.0) is video
    out = recolour(video, 1.0)
    assert out.shape == video.shape and out.abs().max() <= 1.0
    changed = 0
    for clip, new in zip(video, out):
        # every output channel is an input channel, maybe mirrored about mid-grey
        for c in range(3):
            assert any(torch.equal(new[c], s * clip[k]) for k in range(3) for s in (1.0, -1.0))
        changed += not torch.equal(clip, new)
    assert changed >= 12  # 47 of the 48 palettes differ from the original
    torch.manual_seed(0)
    first = recolour(video, 0.5)
    torch.manual_seed(0)
    assert torch.equal(first, recolour(video, 0.5))  # seeded: the same palettes again


def _rollout_cache(model, batch, noise: float, seed: int) -> torch.Tensor:
    conditioner = LPMConditioner(model)
    with torch.no_grad():
        cond = conditioner.encode(batch)
    torch.manual_seed(seed)
    rollout = ChunkRollout(conditioner, model.backbone, cond, window=2, context_noise=noise)
    rollout.commit(batch.x0[:, :, : conditioner.fpc])
    return torch.cat([k.flatten() for k, _ in rollout.cache.chunks[0]])


def test_context_noise_corrupts_only_what_is_committed(micro_cfg, fixed_cache):
    from model_core.model import LPMModel

    torch.manual_seed(0)
    model = LPMModel(micro_cfg).eval()
    batch = fixed_cache.batch([0])
    clean = _rollout_cache(model, batch, 0.0, seed=1)
    assert torch.equal(clean, _rollout_cache(model, batch, 0.0, seed=2))  # no noise: exact
    noisy = _rollout_cache(model, batch, 0.5, seed=1)
    assert not torch.allclose(clean, noisy)
    assert torch.equal(noisy, _rollout_cache(model, batch, 0.5, seed=1))  # seeded
