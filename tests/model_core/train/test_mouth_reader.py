"""The training-side mouth reader and the `vae-decoder` stage's `mouth_read` loss."""

import numpy as np
import pytest
import torch

from model_core.train.config import TrainConfig
from model_core.train.data import FrameBatches, TrainClip
from model_core.train.loop import Trainer
from model_core.train.mouth_reader import (
    PATCH,
    LPMMouthReader,
    crop_mouths,
    perturb_reading,
    reader_error,
    train_mouth_reader,
)


def test_crop_resamples_the_box_and_passes_gradients():
    frames = torch.zeros(1, 3, 32, 32, requires_grad=True)
    with torch.no_grad():
        frames[:, :, 8:16, 4:20] = 1.0  # the box's inside is bright, the rest dark
    inside = crop_mouths(frames, torch.tensor([[4.0, 8.0, 20.0, 16.0]]))
    value = inside.detach()
    assert inside.shape == (1, 3, *PATCH)
    # Bilinear samples: the outermost ring mixes in the dark pixels just outside the box.
    core = value[:, :, 1:-1, 1:-1]
    assert torch.allclose(core, torch.ones_like(core)) and float(value.min()) >= 0.5
    outside = crop_mouths(frames, torch.tensor([[20.0, 20.0, 30.0, 30.0]]))
    assert float(outside.detach().abs().max()) == 0.0
    inside.sum().backward()
    assert float(frames.grad[:, :, 8:16, 4:20].sum()) > 0
    assert float(frames.grad[:, :, 20:].abs().sum()) == 0.0


class TalkingOvals:
    """A clip source of 32x32 faces in their own skin and lip colours whose dark mouth opens
    and closes at each identity's own pace, with face boxes and ground-truth openings."""

    def __init__(self, identities: int = 10, seconds: int = 2):
        self.rng = np.random.default_rng(0)
        self.skin = self.rng.uniform(140, 230, size=(identities, 3))
        self.lip = self.rng.uniform(10, 70, size=(identities, 3))
        self.pace = self.rng.uniform(1.0, 3.0, size=identities)
        self.seconds = seconds

    def windows(self, seconds):
        return [(i, 0) for i in range(len(self.skin)) for _ in range(self.seconds // seconds)]

    def clip(self, window, seconds):
        i, _ = window
        t = np.arange(24 * seconds) / 24
        opening = (0.5 + 0.5 * np.sin(2 * np.pi * self.pace[i] * t + i)).astype(np.float32)
        yy, xx = np.mgrid[0:32, 0:32]
        frames = np.empty((len(t), 32, 32, 3), np.uint8)
        for k, o in enumerate(opening):
            mouth = ((xx - 16) / 6.0) ** 2 + ((yy - 22) / (0.5 + 4 * o)) ** 2 <= 1
            frames[k] = np.where(mouth[..., None], self.lip[i], self.skin[i])
        face = np.tile(np.array([[4.0, -4.5, 28.0, 30.8]], np.float32), (len(t), 1))
        return TrainClip(frames, np.zeros(1), np.zeros(1), "", f"id{i}", face, opening)


def test_reader_learns_the_opening_on_held_out_identities():
    """Trained on some identities, the reader reads the opening of others' frames."""
    reader, metrics = train_mouth_reader(
        TalkingOvals(), steps=200, batch=32, max_frames=1000, progress=False
    )
    assert metrics["val_frames"] > 0 and metrics["train_frames"] > metrics["val_frames"]
    assert metrics["val_r"] > 0.9 and metrics["val_r_blurred"] > 0.8, metrics
    assert not any(p.requires_grad for p in reader.parameters())


def test_reader_saves_and_loads_the_same_weights(tmp_path):
    torch.manual_seed(0)
    reader = LPMMouthReader(width=8)
    path = tmp_path / "reader.safetensors"
    reader.save(path)
    loaded = LPMMouthReader.load(path)
    x, boxes = torch.rand(2, 3, 32, 32) * 2 - 1, torch.tensor([[2.0, 2, 20, 12], [5, 5, 30, 20]])
    assert loaded.width == 8
    assert torch.equal(loaded(x, boxes), reader(x, boxes).detach())


def test_pixel_clips_carry_each_frame_s_mouth_opening(micro_cfg, micro_source):
    fb = FrameBatches(micro_source, frames=9, batch=2, mouth=True, mouth_open=True).next()
    assert fb.mouth_open.shape == (2, 9) and not fb.mouth_open.isnan().any()
    assert float(fb.mouth_open.std()) > 0  # it follows the tone's loudness


def _decoder_config(tmp_path, **options):
    return TrainConfig(
        stage="vae-decoder",
        out=str(tmp_path / "run"),
        steps=4,
        lr=3e-3,
        warmup=1,
        batch=2,
        progress=False,
        options={"frames": 13, "audio": 8, "audio_only": 1, **options},
    )


def test_mouth_read_needs_a_trained_reader(tmp_path, micro_cfg, micro_source, fixed_cache):
    tc = _decoder_config(tmp_path, mouth_read=1.0, mouth_reader=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="mouth_read needs mouth_reader=PATH"):
        Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)


def test_mouth_read_loss_reaches_the_audio_path(tmp_path, micro_cfg, micro_source, fixed_cache):
    """The frozen reader's error is part of the loss and its gradient trains the decoder's
    voice; the reader itself is not trained and not saved in the model."""
    torch.manual_seed(0)
    path = tmp_path / "reader.safetensors"
    LPMMouthReader(width=8).save(path)
    tc = _decoder_config(tmp_path, mouth_read=1.0, mouth_reader=str(path))
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    batch = trainer.batches.next()
    assert batch.mouth_open is not None and batch.mouth is not None
    reader_before = {k: v.clone() for k, v in trainer.objective.reader.state_dict().items()}
    metrics = trainer.train_step()
    assert metrics["mouth_read_mse"] > 0
    dec = trainer.model.vae.decoder
    # The residual's output layer starts at zero; the reader's gradient moved it.
    assert float(dec.audio_inject[-1].out.weight.detach().abs().sum()) > 0
    for k, v in trainer.objective.reader.state_dict().items():
        assert torch.equal(v, reader_before[k])
    assert not any("reader" in k for k in trainer.model.state_dict())


def test_perturbed_reading_moves_scales_and_softens_within_its_bounds():
    torch.manual_seed(0)
    frames = (torch.rand(64, 3, 32, 32) * 2 - 1).requires_grad_(True)
    boxes = torch.tensor([[8.0, 16.0, 24.0, 24.0]]).expand(64, 4)
    same_frames, same_boxes = perturb_reading(frames, boxes, 0.0, 0.0)
    assert same_frames is frames and torch.equal(same_boxes, boxes)
    moved_frames, moved = perturb_reading(frames, boxes, 2.0, 0.0)
    assert torch.equal(moved_frames, frames)
    centre = (moved[:, :2] + moved[:, 2:]) / 2 - torch.tensor([16.0, 20.0])
    size = (moved[:, 2:] - moved[:, :2]) / torch.tensor([16.0, 8.0])
    assert centre.abs().max() <= 2.0 and centre.abs().max() > 1.0  # moved, by up to 2 px
    assert size.min() >= 1 - 2 / 16 - 1e-6 and size.max() <= 1 + 2 / 16 + 1e-6
    assert torch.allclose(size[:, 0], size[:, 1])  # the same scale both ways
    soft, _ = perturb_reading(frames, boxes, 0.0, 1.0)
    # softened: half resolution and back takes most of the per-pixel noise out
    assert (soft[:, :, 1:] - soft[:, :, :-1]).abs().mean() < 0.6 * (
        frames[:, :, 1:] - frames[:, :, :-1]
    ).abs().mean()
    soft.sum().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0


def test_reader_error_reads_through_the_perturbation():
    torch.manual_seed(0)
    reader = LPMMouthReader(8).eval()
    video = torch.rand(1, 3, 6, 32, 32) * 2 - 1
    boxes = torch.tensor([8.0, 16.0, 24.0, 24.0]).expand(1, 6, 4)
    target = torch.full((1, 6), 0.5)
    plain = reader_error(reader, video, boxes, target)
    assert torch.equal(plain, reader_error(reader, video, boxes, target))
    torch.manual_seed(1)
    shaken = reader_error(reader, video, boxes, target, jitter=3.0, soften=0.5)
    assert torch.isfinite(shaken) and not torch.equal(shaken, plain)
