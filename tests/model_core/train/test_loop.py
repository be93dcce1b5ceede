"""The loop: a resumed run takes exactly the step an uninterrupted one takes; every stage's
checkpoint loads through LPMPipeline.load; logs are JSON lines."""

import json

import pytest
import torch

from model_core.checkpoint import read_checkpoint
from model_core.pipeline import LPMPipeline
from model_core.train.config import TrainConfig
from model_core.train.loop import Trainer


def run(tmp, cfg, source, cache, stage, steps, resume=False, options=None):
    tc = TrainConfig(
        stage=stage,
        out=str(tmp),
        steps=steps,
        checkpoint_every=2,
        lr=1e-3,
        warmup=3,
        progress=False,
        resume=resume,
        options=options or {},
    )
    trainer = Trainer(tc, cfg, source=source, cache=cache)
    return trainer, trainer.run()


def log(tmp):
    return [json.loads(line) for line in (tmp / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "stage,options",
    [
        ("base", {}),
        ("dmd-off", {"generator_every": 2}),
        ("vae", {"frames": 5}),
        # two fresh solves fill the pool; the resumed run's first step draws from it
        ("ode", {"ode_steps": 2, "pool": 4, "pool_every": 3, "framed_global": 0.5}),
    ],
)
def test_resumed_run_takes_the_same_next_steps(
    stage, options, tmp_path, micro_cfg, micro_source, micro_cache
):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _, s_whole = run(whole, micro_cfg, micro_source, micro_cache, stage, 4, options=options)
    run(cut, micro_cfg, micro_source, micro_cache, stage, 2, options=options)
    trainer, s_cut = run(
        cut, micro_cfg, micro_source, micro_cache, stage, 4, resume=True, options=options
    )
    assert trainer.resumed_from == "step-00000002" and s_cut["steps"] == 4
    a, b = log(whole), log(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == rb["loss"], (ra, rb)
    _, wa, _ = read_checkpoint(whole / "final")
    _, wb, _ = read_checkpoint(cut / "final")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoints_load_through_the_pipeline_and_stream(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    _, summary = run(tmp_path, micro_cfg, micro_source, micro_cache, "refiner", 3)
    assert summary["final"] == str(tmp_path / "final") and summary["steps"] == 3
    assert json.loads((tmp_path / "final" / "stage.json").read_text())["stage"] == "refiner"
    assert (tmp_path / "latest").read_text() == "step-00000003"
    for ckpt in ("final", "step-00000003"):
        pipe = LPMPipeline.load(tmp_path / ckpt)
        assert pipe.config.name == "micro"
    refs = micro_cache.ref_images[micro_cache.identities[0]]
    stream = pipe.start_stream(refs, text="a test")
    res = stream.push(torch.zeros(16000).numpy(), torch.zeros(16000).numpy())
    assert res.frames.shape == (24, 32, 32, 3)
    half = pipe.save(tmp_path / "fp16", dtype=torch.float16)
    assert LPMPipeline.load(half).config.name == "micro"


def test_old_checkpoints_are_pruned_and_next_stage_starts_from_final(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    run(tmp_path / "base", micro_cfg, micro_source, micro_cache, "base", 6)
    steps = sorted(p.name for p in (tmp_path / "base").glob("step-*"))
    assert steps == ["step-00000004", "step-00000006"]
    tc = TrainConfig(
        stage="ode",
        out=str(tmp_path / "ode"),
        init=str(tmp_path / "base" / "final"),
        steps=1,
        progress=False,
        options={"ode_steps": 2},
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=micro_cache)
    _, base_state, _ = read_checkpoint(tmp_path / "base" / "final")
    assert torch.equal(trainer.model.base.head.head.weight, base_state["base.head.head.weight"])
    # The ODE warm-up starts the Backbone from the trained Base weights.
    assert torch.equal(trainer.model.backbone.head.head.weight, base_state["base.head.head.weight"])


def test_cosine_schedule_follows_steps_or_minutes_whichever_runs_out_first(
    tmp_path, micro_cfg, micro_source, micro_cache
):
    tc = TrainConfig(
        stage="base",
        out=str(tmp_path),
        steps=100,
        lr=1e-3,
        warmup=1,
        progress=False,
        lr_schedule="cosine",
        lr_floor=0.1,
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=micro_cache)
    assert trainer._set_lr() == pytest.approx(1e-3)
    trainer.step = 50
    assert trainer._set_lr() == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    trainer.step = 100
    assert trainer._set_lr() == pytest.approx(1e-4)
    # With a time budget, minutes spent count as progress too.
    trainer.tc = tc.replace(max_minutes=10.0)
    trainer.step = 0
    assert trainer._set_lr(elapsed_s=600.0) == pytest.approx(1e-4)
    assert trainer._set_lr(elapsed_s=300.0) == pytest.approx(1e-3 * 0.55)
    trainer.tc = tc.replace(lr_schedule="linear")
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        trainer._set_lr()
