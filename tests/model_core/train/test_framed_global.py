"""The `framed_global` option: a window's own first frame as the global reference, the
picture framed like the footage that a `ref_concat` transformer can copy."""

import dataclasses

import numpy as np
import pytest
import torch

from model_core.model import build_model
from model_core.train.data import LatentCache, video_tensor
from model_core.train.objectives import make_objective
from model_core.train.objectives.conditioning import (
    LPMConditioner,
    crop_chunks,
    framed_references,
)
from tests.model_core.train.conftest import base_trainer_on


def test_the_cache_keeps_each_windows_first_frame_encoded_alone(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    pics = micro_cache.pictures
    n, z, _, h, w = micro_cache.latents.shape
    assert pics.shape == (n, z, 1, h, w) and pics.dtype == torch.float16
    # The same VAE encoding the window's first frame on its own gives the picture.
    model = build_model(micro_cfg, seed=0)
    wins = micro_source.windows(2)
    first = sorted(np.random.default_rng(0).permutation(len(wins))[:2])[0]  # as `build` picks
    clip = micro_source.clip(wins[first], 2)
    with torch.no_grad():
        alone = model.vae.encode(video_tensor(clip.frames[:1])[None])[0].half()
    assert torch.allclose(alone.float(), pics[0].float(), atol=1e-2)
    micro_cache.save(tmp_path / "c.pt")
    back = LatentCache.load(tmp_path / "c.pt")
    batch = back.batch([1, 0])
    assert torch.equal(batch.picture, pics[[1, 0]].float())
    cropped = crop_chunks(batch, first=1, chunks=1, fpc=2, sample_rate=16000)
    assert torch.equal(cropped.picture, batch.picture)  # a crop keeps the window's picture


def test_framed_references_swap_only_the_global_latent(micro_cache):
    batch = micro_cache.batch([0, 1])
    refs = batch.refs
    framed = framed_references(refs, batch.picture, 1.0)
    assert torch.equal(framed.global_latent, batch.picture)
    assert framed.body.keys() == refs.body.keys() and framed.face.keys() == refs.face.keys()
    assert all(framed.face[k] is refs.face[k] for k in refs.face)
    assert torch.equal(
        framed_references(refs, batch.picture, 0.0).global_latent, refs.global_latent
    )
    torch.manual_seed(0)
    mixed = [
        framed_references(refs, batch.picture, 0.5).global_latent[0].equal(batch.picture[0])
        for _ in range(40)
    ]
    assert 5 < sum(mixed) < 35  # per sample, with the given probability
    with pytest.raises(ValueError, match="framed_global option needs the windows' first frames"):
        framed_references(refs, None, 1.0)


def test_every_dit_stage_conditions_on_the_framed_picture(micro_cfg, micro_cache):
    model = build_model(micro_cfg, seed=0)
    batch = micro_cache.batch([0, 1])
    for stage in ("base", "ode", "dmd-off", "dmd-on", "refiner", "dpo"):
        obj = make_objective(stage, model, {"framed_global": 1.0})
        assert obj.needs_picture
        assert torch.equal(obj.cond.encode(batch).refs.global_latent, batch.picture)
    plain = LPMConditioner(model).encode(batch)
    assert torch.equal(plain.refs.global_latent, batch.refs.global_latent)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_framed_global_must_be_a_probability(micro_cfg, bad):
    model = build_model(micro_cfg, seed=0)
    with pytest.raises(ValueError, match="framed_global must be a probability"):
        make_objective("base", model, {"framed_global": bad})


def test_a_cache_without_pictures_is_rebuilt_only_when_a_stage_needs_them(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    old = dataclasses.replace(micro_cache, pictures=None)

    def cache_for(options):
        return base_trainer_on(tmp_path, micro_cfg, micro_source, old, options).batches.cache

    assert cache_for({}).pictures is None
    rebuilt = cache_for({"framed_global": 1.0})
    assert rebuilt.pictures is not None and len(rebuilt) == len(micro_cache)


def test_a_cache_asked_for_fewer_windows_than_a_stage_wants_is_rebuilt(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    """`--set STAGE.windows=N` must not be answered by the smaller cache an earlier stage left
    in the work folder; a cache asked for the same number is kept."""
    marked = dataclasses.replace(micro_cache, captions=["kept"] * len(micro_cache))

    def cache_for(asked):
        old = dataclasses.replace(marked, max_windows=asked)
        return base_trainer_on(tmp_path, micro_cfg, micro_source, old, {}).batches.cache

    assert cache_for(2).captions == ["kept", "kept"]  # the trainer asks for 2, as built
    rebuilt = cache_for(1)
    assert rebuilt.max_windows == 2 and len(rebuilt) == 2 and "kept" not in rebuilt.captions
