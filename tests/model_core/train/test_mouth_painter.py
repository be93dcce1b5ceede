"""The mouth painter (model_core/mouth_painter.py) and its `mouth-painter` stage."""

import dataclasses

import numpy as np
import pytest
import torch

from model_core.checkpoint import read_checkpoint
from model_core.model import LPMModel, build_model
from model_core.mouth_painter import LPMMouthPainter, head_region
from model_core.pipeline import LPMPipeline
from model_core.train.config import TrainConfig
from model_core.train.loop import Trainer
from model_core.train.objectives import make_objective
from model_core.train.objectives.mouth_painter import high_frequency
from tests.model_core.train.conftest import first_chunk


def _frames(n=3, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, side, side, generator=g) * 2 - 1


def test_a_new_painter_leaves_the_frames_as_they_are():
    painter = LPMMouthPainter(8)
    x = _frames()
    assert torch.equal(painter(x, torch.tensor([0.0, 0.5, 1.0])), x)


def test_the_painter_redraws_the_head_region_alone_and_hears_the_opening():
    torch.manual_seed(0)
    painter = LPMMouthPainter(8)
    torch.nn.init.normal_(painter.out.weight, std=0.1)  # as if trained: a residual that is not 0
    x = _frames(2, side=64)
    shut = painter(x, torch.zeros(2))
    wide = painter(x, torch.ones(2))
    rows, cols = head_region(64, 64)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 48, 8, 56)
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[rows, cols] = False
    assert torch.equal(shut[..., outside], x[..., outside])
    assert not torch.allclose(shut[:, :, rows, cols], wide[:, :, rows, cols])
    video = x.permute(1, 0, 2, 3)[None]  # (1, 3, T=2, H, W)
    painted = painter.paint(video, torch.tensor([[0.0, 1.0]]))
    assert painted.shape == video.shape and painted.abs().max() <= 1.0
    assert torch.allclose(painted[0, :, 1], wide[1].clamp(-1, 1))


def _headed(cfg):
    return dataclasses.replace(cfg, online=dataclasses.replace(cfg.online, mouth_head=16))


def _train_config(tmp_path, options, steps=30):
    """A micro run of the stage: a width-8 painter on 9-frame clips, batches of 2."""
    return TrainConfig(
        stage="mouth-painter",
        out=str(tmp_path / "run"),
        steps=steps,
        lr=3e-3,
        warmup=1,
        batch=2,
        max_windows=4,
        checkpoint_every=1000,
        progress=False,
        options={"width": 8, "frames": 9, **options},
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"width": 12}, "width must be a multiple of 8"),
        ({"frames": 10}, "frames must be 1 \\+ a multiple of 4"),
        ({"outside": -1.0}, "outside >= 0"),
        ({"noise": -0.1}, "noise >= 0"),
        ({"read_jitter": -1.0}, "read_jitter >= 0"),
        ({"read_soften": 1.5}, "0 <= read_soften <= 1"),
        ({"smooth": -1.0}, "smooth >= 0"),
        ({"inside": -0.5}, "inside >= 0"),
    ],
)
def test_the_stage_refuses_bad_options(micro_cfg, options, message):
    with pytest.raises(ValueError, match=message):
        make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), options)


def test_the_stage_needs_a_model_with_a_mouth_head(micro_cfg):
    with pytest.raises(ValueError, match="trained mouth head"):
        make_objective("mouth-painter", LPMModel(micro_cfg), {})
    with pytest.raises(ValueError, match="add a head first"):
        LPMModel(micro_cfg).enable_mouth_painter(16)


def test_the_stage_trains_the_painter_alone_and_its_checkpoint_serves_it(
    tmp_path, micro_cfg, micro_source
):
    trainer = Trainer(_train_config(tmp_path, {}), _headed(micro_cfg), source=micro_source)
    assert trainer.cfg.online.mouth_painter == 8
    others = {
        k: v.clone() for k, v in trainer.model.state_dict().items() if "mouth_painter" not in k
    }
    logs = [trainer.train_step() for _ in range(30)]
    assert all(m["mouth_l1"] >= 0 and "input_mouth_l1" in m for m in logs)
    first = sum(m["mouth_l1"] for m in logs[:5]) / 5
    last = sum(m["mouth_l1"] for m in logs[-5:]) / 5
    assert last < first, [m["mouth_l1"] for m in logs]
    after = trainer.model.state_dict()
    assert all(torch.equal(others[k], after[k]) for k in others)
    final = trainer.run()["final"]
    cfg, state, _ = read_checkpoint(final)
    assert cfg.online.mouth_painter == 8 and cfg.online.mouth_head == 16
    build_model(cfg).load_state_dict(state, strict=True)

    pipe = LPMPipeline.load(final, with_base=False)
    assert pipe.model.mouth_painter is not None
    painted, plain = first_chunk(pipe), first_chunk(pipe, mouth_painter=False)
    # the painter works on the frames only: the latents are the same, the frames are not
    assert torch.equal(painted.latents, plain.latents)
    assert painted.frames.shape == plain.frames.shape
    assert not np.array_equal(painted.frames, plain.frames)


@pytest.mark.parametrize("show_picture", [False, True])
def test_online_steps_paint_the_online_model_s_own_frames_to_random_openings(
    tmp_path, micro_cfg, micro_source, reader_path, show_picture
):
    """`online`: the pool fills with the Online model's streamed clips, one is replaced every
    `online_refresh` steps after that, and the frozen reader's error on the painted frames
    against the openings they were told falls as the painter trains."""
    options = {"online": 1.0, "online_pool": 4, "online_refresh": 2, "mouth_read": 1.0}
    options |= {"show_picture": show_picture}
    tc = _train_config(tmp_path, {**options, "mouth_reader": reader_path}, steps=40)
    trainer = Trainer(tc, _headed(micro_cfg), source=micro_source)
    assert trainer.objective.data_kind == "frames+audio"
    logs = [trainer.train_step() for _ in range(2)]
    pool = trainer.objective.pool
    assert len(pool) == 4 and pool[0][0].shape == (24, 3, 32, 32)
    assert (pool[0][2] is not None) == show_picture  # the picture it was streamed from
    first = pool[0][0].clone()
    logs += [trainer.train_step() for _ in range(38)]
    assert not torch.equal(pool[0][0], first)  # refreshed in place of the oldest
    assert all("online_read_mse" in m and "online_change" in m for m in logs)
    read = [m["online_read_mse"] for m in logs]
    assert sum(read[-8:]) / 8 < sum(read[:8]) / 8, read


def test_online_steps_need_the_drawn_mouth_loss(micro_cfg):
    with pytest.raises(ValueError, match="online needs mouth_read > 0"):
        make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), {"online": 0.5})


def test_roughness_is_the_change_s_high_frequency_part_in_the_head_region():
    flat = torch.full((2, 3, 64, 64), 0.3)
    assert high_frequency(flat).item() < 1e-6  # a uniform change has none
    stripes = torch.zeros(2, 3, 64, 64)
    stripes[:, :, ::2] = 0.3
    assert high_frequency(stripes).item() > 0.1
    below = torch.zeros(2, 3, 64, 64)
    below[:, :, 48:, :] = stripes[:, :, 48:, :]  # under the head region: not the painter's
    assert high_frequency(below).item() == 0.0


def _late_mean(out, micro_cfg, micro_source, options, metric, steps, last):
    """A seeded micro run of the stage: the mean of `metric` over its `last` steps."""
    torch.manual_seed(0)
    trainer = Trainer(_train_config(out, options, steps), _headed(micro_cfg), source=micro_source)
    logs = [trainer.train_step() for _ in range(steps)]
    assert all(metric in m for m in logs)
    return sum(m[metric] for m in logs[-last:]) / last


def test_smooth_keeps_the_painted_change_soft(tmp_path, micro_cfg, micro_source):
    """The same micro run with and without `smooth`: the penalty leaves a change with less
    high-frequency texture."""

    def rough(smooth):
        return _late_mean(tmp_path / str(smooth), micro_cfg, micro_source, {"smooth": smooth},
                          "rough", steps=30, last=10)  # fmt: skip

    free, smoothed = rough(0.0), rough(20.0)
    assert free > 0 and smoothed < 0.7 * free, (free, smoothed)


def test_inside_keeps_the_online_steps_change_in_the_mouth_region_small(
    tmp_path, micro_cfg, micro_source, reader_path
):
    """The same micro run of Online steps with and without `inside`: the penalty leaves a
    smaller change inside the mouth region (the reader alone scores what is drawn there)."""

    def within(inside):
        options = {"online": 1.0, "online_pool": 2, "mouth_read": 1.0, "inside": inside}
        options |= {"mouth_reader": reader_path}
        return _late_mean(tmp_path / str(inside), micro_cfg, micro_source, options,
                          "online_inside_change", steps=24, last=8)  # fmt: skip

    free, kept = within(0.0), within(50.0)
    assert free > 0 and kept < 0.7 * free, (free, kept)


def test_a_painter_shown_the_picture_draws_what_it_did_until_trained():
    torch.manual_seed(0)
    painter = LPMMouthPainter(8)
    torch.nn.init.normal_(painter.out.weight, std=0.1)
    x, pic = _frames(2, side=64), _frames(1, side=64, seed=1)
    before = painter(x, torch.tensor([0.2, 0.9]))
    painter.add_picture()
    assert painter.picture and painter.inp.in_channels == 24
    assert torch.allclose(painter(x, torch.tensor([0.2, 0.9]), pic), before, atol=1e-6)
    torch.nn.init.normal_(painter.inp.weight, std=0.1)  # as if trained: the picture counts
    other = _frames(1, side=64, seed=2)
    assert not torch.allclose(
        painter(x, torch.tensor([0.2, 0.9]), pic), painter(x, torch.tensor([0.2, 0.9]), other)
    )
    with pytest.raises(ValueError, match="pass picture="):
        painter(x, torch.tensor([0.2, 0.9]))


def test_the_stage_shows_the_painter_the_picture_and_serving_shows_it_too(
    tmp_path, micro_cfg, micro_source
):
    with pytest.raises(ValueError, match="show_picture must be true or false"):
        make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), {"show_picture": "yes"})
    tc = _train_config(tmp_path, {"show_picture": True}, steps=12)
    trainer = Trainer(tc, _headed(micro_cfg), source=micro_source)
    assert trainer.cfg.online.mouth_painter_picture and trainer.model.mouth_painter.picture
    logs = [trainer.train_step() for _ in range(12)]
    assert all(np.isfinite(m["mouth_l1"]) for m in logs)
    picture_weights = trainer.model.mouth_painter.inp.weight[:, 12:]
    assert picture_weights.abs().sum() > 0  # the picture's input weights learned
    final = trainer.run()["final"]
    cfg, _, _ = read_checkpoint(final)
    assert cfg.online.mouth_painter_picture
    pipe = LPMPipeline.load(final, with_base=False)
    assert pipe.model.mouth_painter.picture
    painted, plain = first_chunk(pipe), first_chunk(pipe, mouth_painter=False)
    assert painted.frames.shape == plain.frames.shape
    assert not np.array_equal(painted.frames, plain.frames)


def test_more_readers_average_the_reader_error(tmp_path, micro_cfg, reader_path):
    from model_core.train.mouth_reader import LPMMouthReader, reader_error

    torch.manual_seed(0)
    other = tmp_path / "other.safetensors"
    LPMMouthReader(8).save(other)
    model = LPMModel(_headed(micro_cfg))
    options = {"mouth_read": 1.0, "mouth_reader": reader_path, "more_readers": str(other)}
    objective = make_objective("mouth-painter", model, options)
    assert len(objective.readers) == 2
    video = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    boxes = torch.tensor([8.0, 16.0, 24.0, 24.0]).expand(1, 4, 4)
    target = torch.full((1, 4), 0.4)
    each = [reader_error(r, video, boxes, target) for r in objective.readers]
    assert each[0] != each[1]
    assert torch.allclose(objective.read_error(video, boxes, target), (each[0] + each[1]) / 2)
    with pytest.raises(ValueError, match="cannot read .*missing.safetensors"):
        make_objective(
            "mouth-painter", LPMModel(_headed(micro_cfg)),
            options | {"more_readers": str(tmp_path / "missing.safetensors")},
        )  # fmt: skip
    with pytest.raises(ValueError, match="more_readers needs mouth_read > 0"):
        make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), {"more_readers": str(other)})


def test_serve_gain_is_recorded_and_serving_tells_the_painter_that_many_times_the_heard_opening(
    tmp_path, micro_cfg
):
    from model_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = LPMModel(_headed(micro_cfg))
    for bad in ("loud", -1.0, 0.0):
        with pytest.raises(ValueError, match="serve_gain"):
            make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), {"serve_gain": bad})
    objective = make_objective("mouth-painter", model, {"serve_gain": 2.0})
    assert objective.cfg.online.mouth_painter_gain == 2.0 == model.cfg.online.mouth_painter_gain
    torch.nn.init.normal_(model.mouth_painter.out.weight, std=0.1)  # as if trained
    told = {}
    for gain in (1.0, 2.0):
        model.set_painter_gain(gain)
        path = save_checkpoint(model, model.cfg, tmp_path / f"gain{gain:g}", version="test")
        assert read_checkpoint(path)[0].online.mouth_painter_gain == gain
        pipe = LPMPipeline.load(path, with_base=False)
        painter, seen = pipe.model.mouth_painter, []

        def spy(video, opening, picture=None, paint=painter.paint, seen=seen, **kw):
            seen.append(opening)
            return paint(video, opening, picture, **kw)

        painter.paint = spy
        told[gain] = (seen, first_chunk(pipe).frames)
    (once,), (twice,) = told[1.0][0], told[2.0][0]
    assert once.abs().sum() > 0 and torch.allclose(twice, 2 * once)
    assert not np.array_equal(told[1.0][1], told[2.0][1])
    with pytest.raises(ValueError, match="no mouth painter"):
        LPMModel(_headed(micro_cfg)).set_painter_gain(1.5)


@pytest.mark.parametrize("picture", [False, True])
def test_relative_painting_draws_the_edit_for_the_opening_less_the_edit_for_opening_0(picture):
    torch.manual_seed(0)
    painter = LPMMouthPainter(8, picture=picture)
    torch.nn.init.normal_(painter.out.weight, std=0.1)  # as if trained
    torch.nn.init.normal_(painter.out.bias, std=0.1)  # and editing a frame told 0 as well
    x = _frames(3, side=32) * 0.5
    pic = _frames(1, side=32, seed=1) if picture else None
    video, told = x.permute(1, 0, 2, 3)[None], torch.tensor([[0.0, 0.5, 1.0]])
    plain = painter.paint(video, told, pic)
    relative = painter.paint(video, told, pic, relative=True)
    shut = painter(x, torch.zeros(3), pic)
    assert not torch.allclose(shut, x)  # the plain painter edits a frame told 0
    assert torch.allclose(plain[0, :, 0], shut[0].clamp(-1, 1))
    assert torch.equal(relative[0, :, 0], video[0, :, 0])  # relative: 0 leaves it as it was
    for i in (1, 2):
        edit = painter(x[i : i + 1], told[:, i], pic) - shut[i : i + 1]
        assert torch.allclose(relative[0, :, i], (x[i] + edit[0]).clamp(-1, 1), atol=1e-5)
        assert not torch.allclose(relative[0, :, i], plain[0, :, i])


def test_serve_relative_is_recorded_and_serving_paints_relative(tmp_path, micro_cfg):
    from model_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="serve_relative"):
            make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), {"serve_relative": bad})
    model = LPMModel(_headed(micro_cfg))
    objective = make_objective("mouth-painter", model, {"serve_relative": True})
    assert objective.cfg.online.mouth_painter_relative is True
    assert model.cfg.online.mouth_painter_relative is True
    torch.nn.init.normal_(model.mouth_painter.out.weight, std=0.1)  # as if trained
    torch.nn.init.normal_(model.mouth_painter.out.bias, std=0.1)
    served = {}
    for relative in (False, True):
        model.set_painter_relative(relative)
        path = save_checkpoint(model, model.cfg, tmp_path / f"rel{relative}", version="test")
        assert read_checkpoint(path)[0].online.mouth_painter_relative is relative
        pipe = LPMPipeline.load(path, with_base=False)
        painter, seen = pipe.model.mouth_painter, []

        def spy(video, opening, picture=None, paint=painter.paint, seen=seen, **kw):
            seen.append(kw["relative"])
            return paint(video, opening, picture, **kw)

        painter.paint = spy
        served[relative] = (seen, first_chunk(pipe).frames)
    assert served[False][0] == [False] and served[True][0] == [True]
    assert not np.array_equal(served[False][1], served[True][1])
    with pytest.raises(ValueError, match="no mouth painter"):
        LPMModel(_headed(micro_cfg)).set_painter_relative(True)


@pytest.mark.parametrize("relative", [False, True])
def test_strength_draws_the_painter_s_edit_that_many_times_over(relative):
    torch.manual_seed(0)
    painter = LPMMouthPainter(8)
    torch.nn.init.normal_(painter.out.weight, std=0.005)  # as if trained, small enough
    torch.nn.init.normal_(painter.out.bias, std=0.005)  # that no pixel reaches the clamp
    x = _frames(2, side=32) * 0.2
    video, told = x.permute(1, 0, 2, 3)[None], torch.tensor([[0.3, 1.0]])
    once = painter.paint(video, told, relative=relative)
    thrice = painter.paint(video, told, relative=relative, strength=3.0)
    assert thrice.abs().max() < 1.0  # unclamped: the edits compare exactly
    assert not torch.allclose(once, video)
    assert torch.allclose(thrice - video, 3 * (once - video), atol=1e-5)


def test_serve_strength_is_recorded_and_serving_draws_the_edit_that_many_times_over(
    tmp_path, micro_cfg
):
    from model_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    for bad in ("big", 0.0, -1.5):
        with pytest.raises(ValueError, match="serve_strength"):
            make_objective("mouth-painter", LPMModel(_headed(micro_cfg)), {"serve_strength": bad})
    model = LPMModel(_headed(micro_cfg))
    objective = make_objective("mouth-painter", model, {"serve_strength": 1.5})
    assert objective.cfg.online.mouth_painter_strength == 1.5
    torch.nn.init.normal_(model.mouth_painter.out.weight, std=0.1)  # as if trained
    path = save_checkpoint(model, model.cfg, tmp_path / "strong", version="test")
    assert read_checkpoint(path)[0].online.mouth_painter_strength == 1.5
    pipe = LPMPipeline.load(path, with_base=False)
    painter, seen = pipe.model.mouth_painter, []

    def spy(video, opening, picture=None, paint=painter.paint, **kw):
        seen.append(kw["strength"])
        return paint(video, opening, picture, **kw)

    painter.paint = spy
    first_chunk(pipe)
    assert seen == [1.5]
    with pytest.raises(ValueError, match="no mouth painter"):
        LPMModel(_headed(micro_cfg)).set_painter_strength(2.0)


def test_painter_gain_script_writes_the_serving_choice_and_refuses_a_malformed_one(
    tmp_path, micro_cfg
):
    import subprocess
    import sys
    from pathlib import Path

    from model_core.checkpoint import save_checkpoint

    model = LPMModel(_headed(micro_cfg))
    make_objective("mouth-painter", model, {})  # gives the model its painter
    path = save_checkpoint(model, model.cfg, tmp_path / "ckpt", version="test")
    script = Path(__file__).resolve().parents[3] / "scripts" / "painter-gain.py"

    def run(value):
        return subprocess.run(
            [sys.executable, str(script), str(path), "--set", value],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = run("r1.2x1.5")
    assert done.returncode == 0, done.stderr
    online = read_checkpoint(path)[0].online
    assert (online.mouth_painter_gain, online.mouth_painter_relative) == (1.2, True)
    assert online.mouth_painter_strength == 1.5
    before = (Path(path) / "config.json").read_text()
    for bad in ("r1x", "1+0.1", "x2", "0", "r1x-1"):
        refused = run(bad)
        assert refused.returncode == 2, (bad, refused.stderr)
        assert "painter-gain:" in refused.stderr and refused.stderr.count("\n") == 1
        assert (Path(path) / "config.json").read_text() == before
