"""The quality stage drops each planted defect and keeps the clean shot."""

import numpy as np
import pytest

from model_core.data.curation.quality import QualityConfig, assess_shot, crop_frames
from model_core.data.performer.camera import apply_visual_defect, make_background, make_empty_scene
from model_core.data.performer.identity import sample_identity
from model_core.data.performer.render import Camera, CharacterRenderer, Pose
from model_core.data.shards import decode_mp4, encode_mp4

SIZE = 128


def _shot(defect: str | None, frames: int = 40, identity: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    r = CharacterRenderer(sample_identity(identity), SIZE, SIZE)
    bg = make_background(7, SIZE)
    out = []
    for f in range(frames):
        if defect == "nosubject":
            img = make_empty_scene(7, SIZE)
        else:
            cx = SIZE * (1.05 if defect == "offframe" else 0.5)
            cam = Camera(scale=SIZE / 8, cx=cx, cy=SIZE * 0.36)
            img = r.render(
                Pose(mouth_open=0.5 * (f % 4 > 1), yaw=3 * np.sin(f / 5)), cam, bg
            ).copy()
            img = apply_visual_defect(img, defect, 0.8, rng)
        out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    # Through H.264, as the raw recordings are.
    return decode_mp4(encode_mp4(np.stack(out), crf=20))


@pytest.mark.parametrize("identity", [3, 8])
def test_clean_shot_is_kept_with_a_crop_around_the_head(identity):
    m = assess_shot(_shot(None, identity=identity), QualityConfig())
    assert m["reason"] is None
    x0, y0, x1, y1 = m["crop"]
    assert x1 - x0 == y1 - y0 and x0 <= 56 and x1 >= 72  # head centre column 64 inside
    assert y0 <= 25  # top of the head inside


@pytest.mark.parametrize("defect", ["blur", "noise", "compression", "offframe", "nosubject"])
def test_planted_defect_is_dropped_for_the_right_reason(defect):
    assert assess_shot(_shot(defect), QualityConfig())["reason"] == defect


def test_too_short_shot_is_dropped():
    assert assess_shot(_shot(None, frames=20), QualityConfig())["reason"] == "too_short"


def test_crop_resizes_to_training_size():
    frames = np.zeros((3, 128, 128, 3), np.uint8)
    assert crop_frames(frames, [10, 10, 74, 74], 128).shape == (3, 128, 128, 3)
