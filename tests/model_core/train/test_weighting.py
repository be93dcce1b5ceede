"""The recipe's training aids: motion-weighted losses, recoloured VAE clips and noisy stream
context."""

import numpy as np
import pytest
import torch

from model_core.data.curation.quality import crop_box_coords
from model_core.model import build_model
from model_core.train.data import (
    MOUTH_IN_FACE,
    FrameBatches,
    LatentCache,
    mouth_boxes,
    mouth_cover,
    mouth_weights,
)
from model_core.train.objectives import make_objective
from model_core.train.objectives.conditioning import ChunkRollout, LPMConditioner, crop_chunks
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


# -- the mouth region ---------------------------------------------------------------------------
def test_mouth_boxes_follow_the_face_and_span_each_latent_frame():
    # 8 frames of a 40-px face box moving right by 2 px a frame; frames 4-7 have no face.
    boxes = np.array([[10 + 2 * i, 20, 50 + 2 * i, 60] for i in range(8)], np.float32)
    boxes[4:] = np.nan
    m = mouth_boxes(boxes, temporal_factor=4, spatial_factor=8)
    assert m.shape == (2, 4)
    a, b, c, d = MOUTH_IN_FACE
    # latent frame 0: the union of frames 0-3 (x from frame 0's left to frame 3's right)
    expected = np.array([10 + a * 40, 20 + b * 40, 16 + c * 40, 20 + d * 40]) / 8
    assert np.allclose(m[0], expected, atol=1e-5)
    assert np.isnan(m[1]).all()  # no face in any of its frames: no region


def test_mouth_weights_cover_the_region_and_nothing_else():
    mouth = torch.tensor([[[2.0, 3.0, 5.0, 4.5], [np.nan] * 4]])  # (B=1, F=2, 4)
    w = mouth_weights(mouth, (8, 8), strength=4.0)
    assert w.shape == (1, 1, 2, 8, 8)
    region = w[0, 0, 0] - 1.0
    assert torch.isclose(region.sum(), torch.tensor(4.0 * 3.0 * 1.5))  # strength x area
    assert torch.all(region[3, 2:5] == 4.0) and torch.all(region[4, 2:5] == 2.0)  # half a row
    assert region[:3].sum() == 0 and region[:, :2].sum() == 0 and region[:, 5:].sum() == 0
    assert torch.all(w[0, 0, 1] == 1.0)  # an unknown region weighs nothing extra
    assert mouth_weights(mouth, (8, 8), 0.0) is None and mouth_weights(None, (8, 8), 4.0) is None


def test_curated_face_boxes_land_in_the_crop_s_pixels():
    assert crop_box_coords([60, 40, 100, 80], crop=[40, 20, 200, 180], size=128) == [
        16.0,
        16.0,
        48.0,
        48.0,
    ]
    assert crop_box_coords(None, crop=[0, 0, 10, 10], size=128) is None


def test_the_latent_cache_keeps_the_mouth_through_save_load_and_crops(tmp_path, micro_cache):
    fpc = 2
    assert micro_cache.mouth is not None
    assert micro_cache.mouth.shape == (
        *micro_cache.latents.shape[:1],
        micro_cache.latents.shape[2],
        4,
    )
    assert not micro_cache.mouth.isnan().any()  # the synthetic source gives every frame a face
    micro_cache.save(tmp_path / "c.pt")
    back = LatentCache.load(tmp_path / "c.pt")
    assert torch.equal(back.mouth, micro_cache.mouth)
    batch = back.batch([1, 0])
    assert torch.equal(batch.mouth, micro_cache.mouth[[1, 0]])
    cropped = crop_chunks(batch, first=1, chunks=1, fpc=fpc, sample_rate=16000)
    assert torch.equal(cropped.mouth, batch.mouth[:, fpc : 2 * fpc])


def test_mouth_weight_without_face_boxes_is_refused(micro_cfg, micro_cache):
    model = build_model(micro_cfg, seed=0)
    batch = micro_cache.batch([0])
    batch.mouth = None
    obj = make_objective("base", model, {"mouth_weight": 3.0})
    with pytest.raises(ValueError, match="base: the mouth options need face boxes"):
        obj.step(batch)
    assert make_objective("base", model, {}).mouth_weights(None, (4, 4)) is None
    dmd = make_objective("dmd-off", model, {"mouth_regress": 1.0})
    assert dmd.needs_mouth  # the loop then builds batches with mouth regions


def test_mouth_weight_makes_the_base_loss_count_the_mouth_more(micro_cfg, micro_cache):
    """The same model, batch and noise: with the weight, an error in the mouth region moves
    the loss more than the same error elsewhere."""
    model = build_model(micro_cfg, seed=0)
    batch = micro_cache.batch([0])
    region = mouth_cover(batch.mouth, batch.x0.shape[-2:])[0, 0]
    inside = region > 0
    outside = region == 0
    assert inside.any() and outside.any()

    def loss_with_error(mask, weight):
        b = micro_cache.batch([0])
        b.x0 = b.x0 + 2.0 * mask.float()[None, None]
        obj = make_objective("base", model, {"mouth_weight": weight, "chunks": 99})
        obj.p_text = obj.p_audio = obj.p_both = obj.p_global = obj.p_prefix = 0.0
        torch.manual_seed(0)
        with torch.no_grad():
            return obj.step(b)[0].item()

    # Equal-sized errors: one patch inside the mouth, one as large outside it.
    n = int(inside.sum())
    out_idx = outside.flatten().nonzero()[:n, 0]
    elsewhere = torch.zeros_like(outside).flatten()
    elsewhere[out_idx] = True
    elsewhere = elsewhere.view_as(outside)
    gain_plain = loss_with_error(inside, 0.0) - loss_with_error(elsewhere, 0.0)
    gain_weighted = loss_with_error(inside, 5.0) - loss_with_error(elsewhere, 5.0)
    assert gain_weighted > 1.5 * gain_plain > 0


def test_pixel_clips_carry_each_frame_s_mouth_region(micro_cfg, micro_source):
    batches = FrameBatches(micro_source, frames=9, batch=2, mouth=True)
    fb = batches.next()
    assert fb.video.shape == (2, 3, 9, 32, 32) and fb.pcm is None
    assert fb.mouth.shape == (2, 9, 4) and not fb.mouth.isnan().any()
    w = mouth_weights(fb.mouth, (32, 32), 3.0)
    assert w.shape == (2, 1, 9, 32, 32) and w.max() == 4.0 and w.min() == 1.0
    # The region is each frame's own: the synthetic face sways, so the regions differ.
    assert not torch.equal(fb.mouth[0, 0], fb.mouth[0, 8])

    class NoFaces:
        def __init__(self, src):
            self.src = src

        def windows(self, seconds):
            return self.src.windows(seconds)

        def clip(self, window, seconds):
            c = self.src.clip(window, seconds)
            c.face_boxes = None
            return c

    with pytest.raises(ValueError, match="face boxes"):
        FrameBatches(NoFaces(micro_source), frames=9, batch=2, mouth=True)
    assert isinstance(FrameBatches(micro_source, frames=9, batch=2).next(), torch.Tensor)
