"""The Online stream through the real pipeline: causality, determinism, bounded state."""

import dataclasses

import numpy as np
import pytest

from model_core.config import LPMConfig
from model_core.pipeline import LPMPipeline, ReferenceImages


@pytest.fixture(scope="module")
def pipe():
    # The tiny preset's structure at a quarter of the pixels and fewer layers: same code
    # paths (sink, window, audio history, refiner, streaming decode), seconds not minutes.
    cfg = LPMConfig.preset("tiny")
    cfg = dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, height=64, width=64),
        dit=dataclasses.replace(cfg.dit, num_layers=2),
        online=dataclasses.replace(cfg.online, refiner_layers=1),
        refs=dataclasses.replace(cfg.refs, face_size=32),
    )
    return LPMPipeline.build(config=cfg, seed=0, with_base=False)


@pytest.fixture(scope="module")
def refs():
    rng = np.random.default_rng(1)
    return ReferenceImages(
        rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
        body={"front": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)},
        face={"smile": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)},
    )


def audio(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.2 * rng.standard_normal(16000)).astype(np.float32) for _ in range(n)]


def run(pipe, refs, speak, listen, texts=None, **kw):
    stream = pipe.start_stream(refs, text="a calm host", seed=3, **kw)
    out = []
    for i, (s, li) in enumerate(zip(speak, listen, strict=True)):
        if texts and i in texts:
            stream.set_text(*pipe.encode_text(texts[i]))
        out.append(stream.push(s, li).frames)
    return out, stream


def test_future_audio_and_text_never_change_past_chunks(pipe, refs):
    speak, listen = audio(1, 3), audio(2, 3)
    base, _ = run(pipe, refs, speak, listen)
    speak2, listen2 = list(speak), list(listen)
    speak2[2], listen2[2] = audio(9, 1)[0], audio(10, 1)[0]
    changed, _ = run(pipe, refs, speak2, listen2, texts={2: "an angry pirate shouting"})
    for k in range(2):
        assert np.array_equal(base[k], changed[k]), f"chunk {k} changed"
    assert not np.array_equal(base[2], changed[2])


def test_chunks_are_24_frames_and_deterministic(pipe, refs):
    speak, listen = audio(1, 2), audio(2, 2)
    a, _ = run(pipe, refs, speak, listen)
    b, _ = run(pipe, refs, speak, listen)
    assert all(f.shape == (24, 64, 64, 3) and f.dtype == np.uint8 for f in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_stream_state_is_bounded(pipe, refs):
    speak, listen = audio(1, 5), audio(2, 5)
    _, stream = run(pipe, refs, speak, listen)
    w = pipe.config.online.window_chunks
    assert len(stream.cache) == w
    assert int(stream.cache.current_frame_pos().max()) < (
        pipe.config.refs.video_rope_offset + (w + 1) * pipe.config.latent_frames_per_chunk
    )


def test_push_rejects_wrong_lengths(pipe, refs):
    stream = pipe.start_stream(refs)
    with pytest.raises(ValueError, match="16000 samples"):
        stream.push(np.zeros(8000, np.float32), np.zeros(16000, np.float32))


def test_no_sink_ablation_evicts_references(pipe, refs):
    speak, listen = audio(1, 4), audio(2, 4)
    a, _ = run(pipe, refs, speak, listen)
    b, stream = run(pipe, refs, speak, listen, keep_sink=False)
    w = pipe.config.online.window_chunks
    assert all(np.array_equal(a[k], b[k]) for k in range(w))  # identical while refs in window
    assert stream.cache.sink.num_tokens == 0 and not np.array_equal(a[-1], b[-1])


@pytest.fixture(scope="module")
def one_step_pipe(pipe):
    """`pipe`'s weights with a one-step Backbone, where x0 = x - v: guidance is then exact
    arithmetic on the chunk's output."""
    cfg = dataclasses.replace(
        pipe.config, online=dataclasses.replace(pipe.config.online, backbone_timesteps=(1.0,))
    )
    out = LPMPipeline.build(config=cfg, seed=0, with_base=False)
    out.model.load_state_dict(pipe.model.state_dict())
    return out


def _first_chunk_latents(pipe, refs, **kw):
    stream = pipe.start_stream(refs, text="a calm host", seed=3, **kw)
    audio_in = stream.encode_audio(audio(1, 1)[0], audio(2, 1)[0])
    x0 = stream.backbone(audio_in)
    return x0, stream.refine(x0, audio_in)


def test_audio_guidance_moves_along_the_voices_own_direction(one_step_pipe, refs):
    x0 = {g: _first_chunk_latents(one_step_pipe, refs, audio_guidance=g)[0] for g in (0, 1, 3)}
    step = x0[1] - x0[0]  # -(v_c - v_no_audio): what the voice changes in the chunk
    assert step.abs().max() > 1e-4  # the audio does reach the Backbone
    assert np.allclose((x0[3] - x0[0]).numpy(), 3 * step.numpy(), atol=1e-4)


def test_refiner_audio_guidance_only_changes_the_refiner(one_step_pipe, refs):
    x0, plain = _first_chunk_latents(one_step_pipe, refs)
    x0_r, guided = _first_chunk_latents(one_step_pipe, refs, refiner_audio_guidance=2.0)
    assert np.array_equal(x0.numpy(), x0_r.numpy())
    assert not np.allclose(plain.numpy(), guided.numpy(), atol=1e-5)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_audio_guidance_rejects_a_bad_scale(pipe, refs, bad):
    for name in ("audio_guidance", "refiner_audio_guidance"):
        with pytest.raises(ValueError, match=name):
            pipe.start_stream(refs, **{name: bad})
