"""The ODE stage's pool of solved windows: once full, the teacher's ODE is solved only every
`pool_every` steps, a pooled step trains on exactly what was stored, and bad options or a
cache the pool cannot index are refused."""

import dataclasses

import pytest
import torch

from model_core.model import build_model
from model_core.train.config import TrainConfig
from model_core.train.data import LatentCache
from model_core.train.loop import Trainer
from model_core.train.objectives import OptionError, make_objective


def trainer(tmp_path, cfg, source, cache, **options):
    tc = TrainConfig(
        stage="ode",
        out=str(tmp_path),
        steps=20,
        batch=2,
        lr=1e-3,
        warmup=1,
        checkpoint_every=1000,
        progress=False,
        options={"ode_steps": 2, **options},
    )
    return Trainer(tc, cfg, source=source, cache=cache)


def test_once_full_the_teacher_is_solved_every_pool_every_steps(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    tr = trainer(tmp_path, micro_cfg, micro_source, micro_cache, pool=4, pool_every=3)
    ob, solves = tr.objective, []
    solve = ob.trajectory
    ob.trajectory = lambda batch, cond: solves.append(1) or solve(batch, cond)
    fresh = [tr.train_step()["fresh"] for _ in range(7)]
    # two batches of 2 fill the pool of 4; then a fresh solve on counts 3 and 6
    assert fresh == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert len(solves) == 4
    assert ob.pool_len == 4 and ob.pool_next == (4 * 2) % 4


def test_a_pooled_window_comes_back_with_its_own_latents_framing_and_solve(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    tr = trainer(tmp_path, micro_cfg, micro_source, micro_cache, pool=8, framed_global=0.5)
    ob = tr.objective
    for _ in range(4):
        tr.train_step()
    assert ob.pool_len == 8
    torch.manual_seed(3)
    batch, cond, x_end, states = ob.pool_draw(6)
    torch.manual_seed(3)
    slots = torch.randint(ob.pool_len, (6,))
    for b, s in enumerate(slots.tolist()):
        i = int(ob.pool["index"][s])
        assert batch.index[b] == i
        assert torch.equal(batch.x0[b], micro_cache.latents[i].float())
        assert torch.equal(x_end[b], ob.pool["x_end"][s].float())
        for k, t in enumerate(micro_cfg.online.backbone_timesteps):
            assert torch.equal(states[t][b], ob.pool["states"][s, k].float())
        framed = bool(ob.pool["framed"][s])
        assert bool(cond.framed[b]) == framed
        own = micro_cache.refs[micro_cache.identities[i]].global_latent[0]
        want = micro_cache.pictures[i].float() if framed else own
        assert torch.equal(cond.refs.global_latent[b], want)
    # the stored state at t = 1 is the noise the solve started from: not the clean latents
    assert not torch.allclose(states[1.0], x_end, atol=0.1)


def test_the_pool_refuses_bad_options_and_windows_it_cannot_store(micro_cfg, micro_source):
    model = build_model(micro_cfg, seed=0)
    with pytest.raises(OptionError, match="pool must be >= 0"):
        make_objective("ode", model, {"pool": -1})
    with pytest.raises(OptionError, match="pool_every must be >= 1"):
        make_objective("ode", model, {"pool": 4, "pool_every": 0})
    three = LatentCache.build(model, micro_source, seconds=3, max_windows=1, vae_version="m")
    ob = make_objective("ode", model, {"pool": 4})
    with pytest.raises(ValueError, match="exactly chunks=2 chunks"):
        ob.prepare(three)
    make_objective("ode", model, {"pool": 4, "chunks": 3}).prepare(three)  # whole windows: fine


def test_a_checkpoint_for_another_pool_size_or_cache_is_refused(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    tr = trainer(tmp_path, micro_cfg, micro_source, micro_cache, pool=2)
    tr.train_step()
    state = tr.objective.state_dict()
    other = trainer(tmp_path / "b", micro_cfg, micro_source, micro_cache, pool=4).objective
    with pytest.raises(ValueError, match="keeps 2 windows, the option says 4"):
        other.load_state_dict(state)
    # the pool's indices point into the cache it was filled from; another one is refused
    moved = trainer(tmp_path / "c", micro_cfg, micro_source, micro_cache, pool=2).objective
    moved.cache = dataclasses.replace(micro_cache, vae_version="another")
    with pytest.raises(ValueError, match="index another latent cache"):
        moved.load_state_dict(state)


def test_a_pool_smaller_than_a_batch_is_refused(tmp_path, micro_cfg, micro_source, micro_cache):
    tr = trainer(tmp_path, micro_cfg, micro_source, micro_cache, pool=1)
    with pytest.raises(ValueError, match="pool=1 must hold a batch"):
        tr.train_step()
