import numpy as np

from model_core.data.performer.camera import apply_visual_defect
from model_core.data.performer.identity import sample_identity
from model_core.data.performer.render import (
    REFERENCE_KEYS,
    Camera,
    CharacterRenderer,
    Pose,
    reference_set,
)


def test_reference_set_is_complete_and_views_differ():
    refs = reference_set(sample_identity(5), size=128)
    assert list(refs) == REFERENCE_KEYS and len(refs) == 13
    assert all(v.shape == (128, 128, 3) and v.dtype == np.uint8 for v in refs.values())
    views = [refs[f"body/{v}"].astype(int) for v in ("front", "left", "right", "back")]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(views[i] - views[j]).mean() > 1.0
    faces = [refs[k].astype(int) for k in REFERENCE_KEYS if k.startswith("face/")]
    assert min(np.abs(f - faces[0]).mean() for f in faces[1:]) > 0.1


def test_mouth_opening_is_visible():
    r = CharacterRenderer(sample_identity(2))
    bg = np.full((128, 128, 3), 200, np.float32)
    cam = Camera(scale=20, cx=64, cy=50)
    closed = r.render(Pose(mouth_open=0.0), cam, bg).copy()
    opened = r.render(Pose(mouth_open=1.0), cam, bg).copy()
    face = r.face_box(cam)
    assert face is not None
    diff = np.abs(opened - closed).max(axis=2)
    ys, xs = np.nonzero(diff > 30)
    assert len(ys) > 10
    # The change is inside the lower half of the face box.
    assert ys.min() >= (face[1] + face[3]) / 2 - 2 and ys.max() <= face[3]


def test_defects_change_the_frame():
    img = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    rng = np.random.default_rng(1)
    for defect in ("blur", "noise", "compression"):
        assert np.abs(apply_visual_defect(img, defect, 1.0, rng) - img).mean() > 1.0
    assert apply_visual_defect(img, None, 1.0, rng) is img
