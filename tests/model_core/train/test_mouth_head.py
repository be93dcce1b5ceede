"""The mouth head (model_core/mouth_head.py) and its `mouth-head` stage."""

import pytest
import torch

from model_core.checkpoint import read_checkpoint
from model_core.dit import latent_frame_spans
from model_core.model import LPMModel, build_model
from model_core.mouth_head import HISTORY, LPMMouthHead
from model_core.pipeline import LPMPipeline
from model_core.train.config import TrainConfig
from model_core.train.loop import Trainer
from model_core.train.objectives import make_objective
from model_core.train.objectives.mouth_head import neutral_mouth
from tests.model_core.train.conftest import first_chunk


def _head_inputs(seed=0, frames=3, feats=20, dim=8, hw=4):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 16, frames, hw, hw, generator=g)
    picture = torch.randn(2, 16, 1, hw, hw, generator=g)
    speak = torch.randn(2, feats, dim, generator=g)
    spans = latent_frame_spans(frames, feats - 4 * frames, 4)
    return z, picture, speak, spans


def test_a_new_head_leaves_the_latents_as_they_are():
    head = LPMMouthHead(16, 8, width=16)
    z, picture, speak, spans = _head_inputs()
    out, opening = head(z, picture, speak, spans)
    assert torch.equal(out, z)
    assert opening.shape == (2, 3, 4)


def test_the_head_hears_its_own_frames_and_the_ones_before_never_later_ones():
    torch.manual_seed(0)
    head = LPMMouthHead(16, 8, width=16)
    torch.nn.init.normal_(head.out.weight, std=0.1)  # as if trained: a residual that is not 0
    z, picture, speak, spans = _head_inputs()
    out = head(z, picture, speak, spans)[0]
    last0 = int(spans[0, 1])  # latent frame 0 hears features up to here
    later = speak.clone()
    later[:, last0 + 1 :] += 5.0
    out_later = head(z, picture, later, spans)[0]
    assert torch.equal(out[:, :, 0], out_later[:, :, 0])
    assert not torch.allclose(out[:, :, 1:], out_later[:, :, 1:])
    earlier = speak.clone()
    earlier[:, last0 - 4 - HISTORY + 1] += 5.0  # the first feature frame 0 hears
    assert not torch.allclose(head(z, picture, earlier, spans)[0][:, :, 0], out[:, :, 0])


def test_the_neutral_mouth_keeps_every_other_cell_and_takes_the_mouth_s_timing_away():
    torch.manual_seed(0)
    x0 = torch.randn(1, 2, 5, 4, 4)
    cells = torch.zeros(1, 1, 5, 4, 4)
    cells[..., 2:, 1:3] = 1.0
    out = neutral_mouth(x0, cells)
    keep = cells[0, 0, 0] == 0
    assert torch.equal(out[..., keep], x0[..., keep])
    inside = out[..., ~keep]
    assert torch.allclose(inside, inside[:, :, :1].expand_as(inside))  # the same every frame
    assert torch.allclose(inside[:, :, 0], x0[..., ~keep].mean(2))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"width": 12}, "width a multiple of 8"),
        ({"outside": -1.0}, "outside >= 0"),
        ({"opening": -0.5}, "opening >= 0"),
        ({"noise": -0.1}, "noise >= 0"),
    ],
)
def test_the_stage_refuses_bad_options(micro_cfg, options, message):
    with pytest.raises(ValueError, match=message):
        make_objective("mouth-head", LPMModel(micro_cfg), options)


def test_the_stage_trains_the_head_alone_and_its_checkpoint_serves_it(
    tmp_path, micro_cfg, micro_source, fixed_cache
):
    tc = TrainConfig(
        stage="mouth-head",
        out=str(tmp_path / "run"),
        steps=30,
        lr=3e-3,
        warmup=1,
        batch=2,
        checkpoint_every=1000,
        progress=False,
        options={"width": 16},
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    assert micro_cfg.online.mouth_head == 0 and trainer.cfg.online.mouth_head == 16
    others = {k: v.clone() for k, v in trainer.model.state_dict().items() if "mouth_head" not in k}
    logs = [trainer.train_step() for _ in range(30)]
    assert all(m["mouth_mse"] >= 0 and "input_mouth_mse" in m for m in logs)
    first = sum(m["mouth_mse"] for m in logs[:5]) / 5
    last = sum(m["mouth_mse"] for m in logs[-5:]) / 5
    assert last < first, [m["mouth_mse"] for m in logs]
    after = trainer.model.state_dict()
    assert all(torch.equal(others[k], after[k]) for k in others)
    final = trainer.run()["final"]
    cfg, state, _ = read_checkpoint(final)
    assert cfg.online.mouth_head == 16
    build_model(cfg).load_state_dict(state, strict=True)

    pipe = LPMPipeline.load(final, with_base=False)
    assert pipe.model.mouth_head is not None
    heard, plain = first_chunk(pipe), first_chunk(pipe, mouth_head=False)
    assert not torch.allclose(heard.latents, plain.latents)


def test_soft_inputs_are_the_footage_as_the_online_model_redraws_it(micro_cfg, fixed_cache):
    """`soft`: the windows redrawn once by the frozen Backbone and Refiner (same shape as the
    footage, not the footage), made again the same from the same seed; with soft=1 every
    input starts from them, with the mouth's cells still neutralised."""
    model = build_model(micro_cfg, seed=0)
    obj = make_objective("mouth-head", model, {"width": 16, "soft": 1.0, "noise": 0.0})
    obj.prepare(fixed_cache)
    soft = obj.soft_latents
    assert soft.shape == fixed_cache.latents.shape and soft.dtype == torch.float16
    assert not torch.allclose(soft.float(), fixed_cache.latents.float(), atol=1e-2)
    assert torch.equal(obj.redraw(fixed_cache), soft)
    batch = fixed_cache.batch([0])
    x_in, cells, _, _ = obj.inputs(batch)
    assert torch.allclose(x_in, neutral_mouth(soft[[0]].float(), cells))


@pytest.mark.parametrize("options", [{"soft": 1.5}, {"soft_t": 0.0}])
def test_the_stage_refuses_a_soft_share_or_time_out_of_range(micro_cfg, options):
    with pytest.raises(ValueError, match="0 <= soft <= 1 and 0 < soft_t <= 1"):
        make_objective("mouth-head", LPMModel(micro_cfg), options)


def test_the_picture_s_mouth_is_the_box_of_the_window_s_most_closed_frame(fixed_cache):
    from model_core.train.objectives.mouth_head import picture_mouth

    batch = fixed_cache.batch([0])
    opening = batch.mouth_open.clone()
    opening[:] = 0.8
    opening[0, 3, 2] = 0.1  # latent frame 3 holds the most closed mouth
    batch.mouth_open = opening
    boxes = picture_mouth(batch)
    assert boxes.shape == batch.mouth.shape
    assert torch.equal(boxes[0], batch.mouth[0, 3].expand_as(boxes[0]))


def test_online_steps_score_the_drawn_mouth_of_the_online_model_s_own_latents(
    tmp_path, micro_cfg, micro_source, fixed_cache, reader_path
):
    """`online`: the Online model's latents, streamed once at the start, through the head, and
    the frozen pixel reader's error on the decoded chunk falls as the head trains."""
    options = {"width": 16, "online": 1.0, "mouth_read": 1.0, "mouth_reader": reader_path}
    tc = TrainConfig(
        stage="mouth-head",
        out=str(tmp_path / "run"),
        steps=40,
        lr=3e-3,
        warmup=1,
        batch=1,
        checkpoint_every=1000,
        progress=False,
        options=options,
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    logs = [trainer.train_step() for _ in range(40)]
    online = trainer.objective.online_latents
    assert online.shape == fixed_cache.latents.shape
    assert all("online_read_mse" in m and "online_anchor" in m for m in logs)
    read = [m["online_read_mse"] for m in logs]
    assert sum(read[-8:]) / 8 < sum(read[:8]) / 8, read


def test_online_steps_need_the_drawn_mouth_loss(micro_cfg):
    with pytest.raises(ValueError, match="online needs mouth_read > 0"):
        make_objective("mouth-head", LPMModel(micro_cfg), {"online": 0.5})
