import numpy as np
import pytest
import torch

from model_core.pipeline import EncodedReferences, LPMPipeline, ReferenceError, ReferenceImages


@pytest.fixture(scope="module")
def pipe():
    return LPMPipeline.build("tiny", seed=0)


def img(size=128, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def test_encoded_references_roundtrip_through_bytes(pipe):
    refs = ReferenceImages(img(), body={"left": img(seed=1)}, face={"laugh": img(64, 2)})
    enc = pipe.encode_references(refs)
    back = EncodedReferences.from_bytes(enc.to_bytes())
    assert back.model_version == pipe.version
    assert torch.equal(back.global_latent, enc.global_latent)
    assert set(back.body) == {"left"} and torch.equal(back.face["laugh"], enc.face["laugh"])
    assert enc.global_latent.shape == (1, 16, 1, 16, 16)
    assert enc.face["laugh"].shape == (1, 16, 1, 8, 8)


def test_any_image_size_is_cropped_and_resized(pipe):
    enc = pipe.encode_references(ReferenceImages(img(300)[:, :200]))
    assert enc.global_latent.shape == (1, 16, 1, 16, 16)


@pytest.mark.parametrize(
    "refs,match",
    [
        (lambda: ReferenceImages(img(), body={"up": img()}), "unknown body view 'up'"),
        (lambda: ReferenceImages(img(), face={"wink": img(64)}), "unknown face expression 'wink'"),
        (
            lambda: ReferenceImages(img(), face={f"x{i}": img(64) for i in range(9)}),
            "at most 8 face",
        ),
        (
            lambda: ReferenceImages(
                img(), body={v: img() for v in ["front"] * 1 + ["a", "b", "c", "d"]}
            ),
            "at most 4 body",
        ),
        (lambda: ReferenceImages(None), "global reference image is required"),
        (lambda: ReferenceImages(np.zeros((8, 8), np.uint8)), "RGB uint8"),
    ],
)
def test_bad_reference_sets_name_the_problem(pipe, refs, match):
    with pytest.raises(ReferenceError, match=match):
        pipe.encode_references(refs())


def test_custom_face_labels_when_allowed(pipe):
    enc = pipe.encode_references(
        ReferenceImages(img(), face={"wink": img(64)}), allow_custom_faces=True
    )
    assert "wink" in enc.face


def test_checkpoint_roundtrip_gives_identical_output(pipe, tmp_path):
    pipe.save(tmp_path / "ckpt")
    again = LPMPipeline.load(tmp_path / "ckpt")
    refs = ReferenceImages(img())
    speak = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    a = pipe.start_stream(refs, seed=1).push(speak, np.zeros(16000, np.float32)).frames
    b = again.start_stream(refs, seed=1).push(speak, np.zeros(16000, np.float32)).frames
    assert np.array_equal(a, b) and again.version == pipe.version


def test_loading_a_folder_that_is_not_a_checkpoint_fails_clearly(tmp_path):
    from model_core.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        LPMPipeline.load(tmp_path)


def test_base_renders_a_whole_clip(pipe):
    speak = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    steps = []
    clip = pipe.render_base(
        ReferenceImages(img()), speak, seconds=1, steps=2, progress=lambda i, n: steps.append(i)
    )
    assert clip.shape == (24, 128, 128, 3) and clip.dtype == np.uint8 and steps == [1, 2]


def test_param_counts_by_part(pipe):
    counts = pipe.param_counts()
    assert counts["references"] == 0
    parts = ("vae", "trunk", "audio", "text", "references", "refiner")
    assert counts["total"] == sum(counts[p] for p in parts)
    assert all(counts[p] > 0 for p in parts if p != "references")


def test_online_only_checkpoint_loads_and_streams(pipe, tmp_path):
    online = LPMPipeline(pipe.model, pipe.version)
    state_dir = tmp_path / "online"
    base, pipe.model.base = pipe.model.base, None
    try:
        online.save(state_dir)
    finally:
        pipe.model.base = base
    loaded = LPMPipeline.load(state_dir)
    assert loaded.model.base is None
    frames = (
        loaded.start_stream(ReferenceImages(img()))
        .push(np.zeros(16000, np.float32), np.zeros(16000, np.float32))
        .frames
    )
    assert frames.shape == (24, 128, 128, 3)
    with pytest.raises(RuntimeError, match="without the Base model"):
        loaded.render_base(ReferenceImages(img()), np.zeros(16000, np.float32), seconds=1)


def test_split_base_checkpoint_serves_without_reading_the_teacher(pipe, tmp_path):
    from model_core.checkpoint import BASE_WEIGHTS, WEIGHTS

    path = pipe.save(tmp_path / "split", dtype=torch.float16, split_base=True)
    from safetensors import safe_open

    with safe_open(str(path / WEIGHTS), "pt") as f:
        online_keys = set(f.keys())
    with safe_open(str(path / BASE_WEIGHTS), "pt") as f:
        base_keys = set(f.keys())
    assert base_keys and all(k.startswith("base.") for k in base_keys)
    assert online_keys and not any(k.startswith("base.") for k in online_keys)

    serving = LPMPipeline.load(path, with_base=False)
    assert serving.model.base is None
    full = LPMPipeline.load(path)
    assert full.model.base is not None
    for k, v in pipe.model.base.state_dict().items():
        assert torch.equal(full.model.base.state_dict()[k], v.half().float()), k
    # Saving again without the split removes the teacher file, so stale weights never load.
    full.save(path)
    assert not (path / BASE_WEIGHTS).exists()
    assert LPMPipeline.load(path).model.base is not None
