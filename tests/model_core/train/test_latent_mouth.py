"""The latent mouth reader and the `base` stage's `mouth_latent` and `picture=rest` options:
a loss on the one latent direction the mouth's opening moves along, and a framed picture
whose mouth says nothing about the window's speech."""

import dataclasses

import numpy as np
import pytest
import torch

from model_core.model import build_model
from model_core.train.data import (
    LatentBatches,
    LatentCache,
    latent_openings,
    picture_frame,
    video_tensor,
)
from model_core.train.latent_mouth import (
    LatentMouthReader,
    fit_latent_mouth_reader,
    mouth_band,
)
from model_core.train.objectives import make_objective
from model_core.train.objectives.conditioning import crop_chunks
from tests.model_core.train.conftest import base_trainer_on


def test_openings_are_grouped_by_latent_frame_and_the_rest_picture_is_the_most_closed():
    opening = np.array([0.5, 0.2, 0.9, 0.1, 0.4, 0.3, 0.7, 0.8, 0.6], np.float32)
    grouped = latent_openings(opening, 9, 4)
    assert grouped.shape == (2, 4) and grouped[1, 0] == 0.4  # the ninth frame is cut
    assert np.isnan(latent_openings(None, 8, 4)).all()
    assert picture_frame(opening, "rest") == 3
    assert picture_frame(opening, "first") == 0
    assert picture_frame(np.full(4, np.nan, np.float32), "rest") == 0  # unknown: the first


def test_the_cache_keeps_openings_and_can_take_the_resting_frame_as_picture(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    n, _, f, _, _ = micro_cache.latents.shape
    assert micro_cache.mouth_open.shape == (n, f, micro_cfg.vae.temporal_factor)
    assert micro_cache.picture_kind == "first"
    model = build_model(micro_cfg, seed=0)
    rest = LatentCache.build(model, micro_source, 2, max_windows=2, picture="rest")
    assert rest.picture_kind == "rest"
    # Only the picture changes. Encoded twice, a latent may differ by one float16 rounding
    # step (the kernels' summation order can differ between the first and a later call).
    torch.testing.assert_close(rest.latents, micro_cache.latents, rtol=1e-3, atol=1e-4)
    wins = micro_source.windows(2)
    first = sorted(np.random.default_rng(0).permutation(len(wins))[:2])[0]  # as `build` picks
    clip = micro_source.clip(wins[first], 2)
    j = int(np.argmin(clip.mouth_open))
    assert j > 0  # the synthetic blob is not most closed at the window's start
    with torch.no_grad():
        alone = model.vae.encode(video_tensor(clip.frames[j : j + 1])[None])[0].half()
    assert torch.allclose(alone.float(), rest.pictures[0].float(), atol=1e-2)
    assert not torch.allclose(rest.pictures[0].float(), micro_cache.pictures[0].float())
    rest.save(tmp_path / "c.pt")
    back = LatentCache.load(tmp_path / "c.pt")
    assert back.picture_kind == "rest" and torch.equal(back.mouth_open, rest.mouth_open)
    batch = back.batch([1, 0])
    assert torch.equal(batch.mouth_open, rest.mouth_open[[1, 0]])
    cropped = crop_chunks(batch, first=1, chunks=1, fpc=2, sample_rate=16000)
    assert torch.equal(cropped.mouth_open, batch.mouth_open[:, 2:4])
    with pytest.raises(ValueError, match="picture must be one of first, rest"):
        LatentCache.build(model, micro_source, 2, max_windows=1, picture="last")


def test_the_band_is_linear_in_the_latent_and_follows_the_box():
    z = torch.zeros(1, 2, 1, 8, 8)
    z[0, 1, 0, 5, 2:6] = 1.0  # a bright row of cells in channel 1
    box = torch.tensor([[[2.0, 5.0, 6.0, 6.0]]])  # exactly that row, one cell high
    feats, known = mouth_band(z, box, grid=(1, 4))
    assert known.all()
    assert torch.allclose(feats[0, 0], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0]))
    moved = torch.tensor([[[2.0, 1.0, 6.0, 2.0]]])  # a box elsewhere sees nothing
    assert feats.shape == (1, 1, 8) and mouth_band(z, moved, grid=(1, 4))[0].abs().max() < 1e-6
    a, b = torch.randn(1, 2, 3, 8, 8), torch.randn(1, 2, 3, 8, 8)
    boxes = torch.tensor([[[1.0, 4.0, 7.0, 6.5]] * 3])
    fa, fb, fab = (mouth_band(x, boxes)[0] for x in (a, b, 2 * a - b))
    assert torch.allclose(fab, 2 * fa - fb, atol=1e-5)
    nan_box = torch.full((1, 3, 4), float("nan"))
    assert not mouth_band(a, nan_box)[1].any()


def _planted_cache(identities=8, windows=4, frames=6, seed=0):
    """Latents whose mouth cells carry each frame's opening (plus noise); the rest noise."""
    g = torch.Generator().manual_seed(seed)
    n = identities * windows
    opening = torch.rand(n, frames, 4, generator=g)
    lat = torch.randn(n, 4, frames, 8, 8, generator=g) * 0.5
    for k in range(4):  # the k-th video frame's opening in channel k, over the mouth cells
        lat[:, k, :, 5:7, 2:6] += opening[..., k][:, :, None, None] * 2.0
    box = torch.tensor([2.0, 5.0, 6.0, 7.0]).expand(n, frames, 4).clone()
    ids = [f"id{i // windows}" for i in range(n)]
    return LatentCache(
        lat.half(),
        torch.zeros(n, 10).half(),
        torch.zeros(n, 10).half(),
        [""] * n,
        ids,
        {},
        {},
        2,
        mouth=box,
        pictures=torch.randn(n, 4, 1, 8, 8, generator=g).half() * 0.5,
        mouth_open=opening,
    )


def test_the_reader_finds_a_planted_opening_on_held_out_identities():
    cache = _planted_cache()
    reader = fit_latent_mouth_reader(cache)
    assert reader.held_out_r > 0.8
    # On a cache it has not seen, its reading follows the opening.
    other = _planted_cache(seed=1)
    pred, known = reader.read(other.latents.float(), other.mouth, other.pictures.float())
    r = np.corrcoef(pred[known].flatten(), other.mouth_open[known].flatten())[0, 1]
    assert known.all() and r > 0.8
    # Shuffled openings carry nothing to find.
    shuffled = dataclasses.replace(cache, mouth_open=cache.mouth_open[torch.randperm(len(cache))])
    assert fit_latent_mouth_reader(shuffled).held_out_r < 0.3
    back = LatentMouthReader.from_state(reader.state_dict())
    assert torch.equal(
        back.read(other.latents.float(), other.mouth, other.pictures.float())[0], pred
    )
    assert not any(p.requires_grad for p in back.parameters())  # a frozen judge


def test_the_reader_names_missing_openings(micro_cache):
    with pytest.raises(ValueError, match="needs face boxes, mouth openings and pictures"):
        fit_latent_mouth_reader(dataclasses.replace(micro_cache, mouth_open=None))


@pytest.mark.parametrize("bad", [{"mouth_latent": -1.0}, {"picture": "middle"}])
def test_bad_mouth_options_are_refused(micro_cfg, bad):
    model = build_model(micro_cfg, seed=0)
    with pytest.raises(ValueError, match="mouth_latent must be >= 0|picture must be one of"):
        make_objective("base", model, bad)


def test_mouth_latent_loss_falls_and_moves_the_mouth_cells_towards_the_footage(
    micro_cfg, micro_cache
):
    model = build_model(micro_cfg, seed=0)
    obj = make_objective("base", model, {"mouth_latent": 10.0, "clean_prefix": 0.0})
    assert obj.needs_mouth and obj.needs_mouth_open
    with pytest.raises(RuntimeError, match="fitted in prepare"):
        obj.step(micro_cache.batch([0]))
    obj.prepare(micro_cache)
    assert obj.reader is not None and obj.reader.net[-1].out_features == 4
    batch = micro_cache.batch([0, 1])
    # Two windows of a random micro VAE hold no opening to read; a reader fitted on planted
    # openings gives the loss a direction of a known size to learn.
    obj.reader = _planted_reader_for(batch)
    params = [p for m in obj.trainable_modules() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    torch.manual_seed(0)
    first = []
    for step in range(40):
        torch.manual_seed(step % 4)  # the same four noise draws over and over
        loss, metrics = obj.step(batch)
        assert "mouth_latent" in metrics
        if step < 4:
            first.append(metrics["mouth_latent"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = []
    for step in range(4):
        torch.manual_seed(step)
        with torch.no_grad():
            last.append(obj.step(batch)[1]["mouth_latent"])
    assert np.mean(last) < 0.5 * np.mean(first)
    state = obj.state_dict()["latent_mouth"]
    assert state["net.4.weight"].shape[0] == 4


def test_a_cache_is_rebuilt_for_openings_and_for_another_picture_kind(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    old = dataclasses.replace(micro_cache, mouth_open=None)

    def cache_for(options):
        trainer = base_trainer_on(tmp_path, micro_cfg, micro_source, old, options)
        assert isinstance(trainer.batches, LatentBatches)
        return trainer

    assert cache_for({}).batches.cache.mouth_open is None  # not needed: kept
    trainer = cache_for({"mouth_latent": 1.0})
    assert trainer.batches.cache.mouth_open is not None  # rebuilt with the openings
    assert trainer.objective.reader is not None  # fitted before the first step
    assert cache_for({"framed_global": 1.0}).batches.cache.picture_kind == "first"
    rest = cache_for({"framed_global": 1.0, "picture": "rest"}).batches.cache
    assert rest.picture_kind == "rest" and rest.mouth_open is not None


def _planted_reader_for(batch):
    """A reader fitted on openings planted in channel 0 of latents shaped like `batch`'s."""
    f, d = batch.x0.shape[2], batch.x0.shape[1]
    planted = _planted_cache(identities=4, frames=f)
    planted = dataclasses.replace(
        planted,
        latents=torch.randn(len(planted), d, f, *batch.x0.shape[-2:]).half(),
        pictures=torch.randn(len(planted), d, 1, *batch.x0.shape[-2:]).half(),
        mouth=batch.mouth[:1].expand(len(planted), -1, -1).clone(),
    )
    planted.latents[:, 0] += planted.mouth_open.mean(-1)[:, :, None, None].half() * 2
    return fit_latent_mouth_reader(planted, steps=200)


@pytest.mark.parametrize("stage", ["ode", "dmd-off", "dmd-on", "refiner"])
def test_every_generator_stage_adds_the_opening_error_and_its_gradient(
    micro_cfg, micro_cache, stage
):
    model = build_model(micro_cfg, seed=0)
    obj = make_objective(stage, model, {"mouth_latent": 5.0})
    obj.prepare(micro_cache)
    batch = micro_cache.batch([0, 1])
    obj.reader = _planted_reader_for(batch)
    torch.manual_seed(0)
    loss, metrics = obj.step(batch)
    assert metrics["mouth_latent"] > 0
    trained = obj.trainable_modules()[0]
    for p in trained.parameters():
        p.grad = None
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    # The reader is part of the stage's state, so a resumed run scores with the same one.
    state = obj.state_dict()
    again = make_objective(stage, build_model(micro_cfg, seed=0), {"mouth_latent": 5.0})
    again.load_state_dict(state)
    assert torch.equal(again.reader.net[0].weight, obj.reader.net[0].weight)


@pytest.mark.parametrize("stage", ["dpo", "vae", "vae-decoder"])
def test_stages_without_the_opening_error_refuse_the_option(micro_cfg, stage):
    with pytest.raises(ValueError, match=f"{stage} has no mouth_latent option"):
        make_objective(stage, build_model(micro_cfg, seed=0), {"mouth_latent": 1.0})
