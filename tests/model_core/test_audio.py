"""Properties of the causal audio encoder: frame timing, causality, finite receptive field and
streaming equality."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.audio import AudioFeatureExtractor, LogMelFrontEnd, LPMAudioEncoder, mel_filterbank
from model_core.config import AudioConfig, LPMConfig

SR = 16000


@pytest.fixture(scope="module")
def encoder() -> LPMAudioEncoder:
    torch.manual_seed(0)
    return LPMAudioEncoder(AudioConfig()).eval()


def _pcm(n: int, b: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, generator=g) * 2 - 1) * 0.5


@pytest.mark.parametrize(
    ("n", "frames"), [(0, 0), (666, 0), (667, 1), (16000, 24), (16001, 24), (40000, 60)]
)
def test_complete_frames_only(encoder, n, frames):
    with torch.no_grad():
        assert encoder(_pcm(n, b=2)).shape == (2, frames, 128)
    assert encoder.num_frames(n) == frames


def test_frame_ends_on_the_24fps_grid(encoder):
    assert [encoder.frame_end_sample(i) for i in range(4)] == [667, 1334, 2000, 2667]
    assert encoder.frame_end_sample(23) == SR


@settings(max_examples=15, deadline=None)
@given(frame=st.integers(0, 46))
def test_future_samples_never_change_past_features(encoder, frame):
    pcm = _pcm(2 * SR)
    end = encoder.frame_end_sample(frame)
    changed = pcm.clone()
    changed[:, end:] = torch.rand_like(changed[:, end:]) * 2 - 1
    with torch.no_grad():
        a, b = encoder(pcm), encoder(changed)
    assert torch.equal(a[:, : frame + 1], b[:, : frame + 1])
    assert not torch.equal(a[:, frame + 1 :], b[:, frame + 1 :])


@settings(max_examples=10, deadline=None)
@given(frame=st.integers(10, 47))
def test_left_receptive_field_is_finite(encoder, frame):
    """Samples older than receptive_field_samples before a frame's end do not affect it."""
    pcm = _pcm(2 * SR, seed=3)
    start = encoder.frame_end_sample(frame) - encoder.receptive_field_samples
    if start <= 0:
        return
    changed = pcm.clone()
    changed[:, :start] = 0.0
    with torch.no_grad():
        a, b = encoder(pcm), encoder(changed)
    torch.testing.assert_close(a[:, frame], b[:, frame], atol=1e-5, rtol=0)


def test_one_second_pushes_equal_whole_signal(encoder):
    pcm = _pcm(5 * SR, b=2, seed=1)
    with torch.no_grad():
        whole = encoder(pcm)
        stream = encoder.stream(batch=2)
        pushes = [stream.push(pcm[:, i : i + SR]) for i in range(0, 5 * SR, SR)]
    assert all(p.shape == (2, 24, 128) for p in pushes)
    torch.testing.assert_close(torch.cat(pushes, dim=1), whole, atol=1e-5, rtol=0)
    # The stream keeps only the left context it needs, not the whole signal.
    assert stream.buffer.shape[1] <= stream.context_samples + 160


@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=6))
def test_any_push_sizes_equal_whole_signal(encoder, sizes):
    pcm = _pcm(sum(sizes), seed=2)
    with torch.no_grad():
        whole = encoder(pcm)
        stream = encoder.stream()
        out, start = [], 0
        for n in sizes:
            out.append(stream.push(pcm[0, start : start + n]))
            start += n
    torch.testing.assert_close(torch.cat(out, dim=0), whole[0], atol=1e-5, rtol=0)


def test_stream_checks_batch(encoder):
    with pytest.raises(ValueError, match="batch"):
        encoder.stream(batch=2).push(_pcm(SR))


def test_log_mel_front_end_is_causal_per_hop():
    fe = LogMelFrontEnd(AudioConfig())
    assert isinstance(fe, AudioFeatureExtractor)
    pcm = _pcm(4000)
    changed = pcm.clone()
    changed[:, 1600:] = 0.3
    a, b = fe(pcm), fe(changed)
    assert a.shape == (1, 25, 64)
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10], b[:, 10])


def test_mel_filterbank_covers_the_spectrum():
    fb = mel_filterbank(SR, 400, 64)
    assert fb.shape == (201, 64)
    assert (fb >= 0).all() and (fb.sum(0) > 0).all()
    # A pure tone lights up the filter around its frequency.
    t = torch.arange(SR) / SR
    mel = LogMelFrontEnd(AudioConfig())(torch.sin(2 * torch.pi * 1000 * t)[None])
    peak = int(mel[0, 50].argmax())
    centre = (fb * torch.linspace(0, 8000, 201)[:, None]).sum(0) / fb.sum(0)
    assert abs(float(centre[peak]) - 1000) < 150


def test_custom_front_end_plugs_in():
    class Hop320:
        hop_length, out_dim, receptive_field_samples = 320, 8, 400

        def __call__(self, pcm):
            return pcm.unfold(-1, 320, 320)[..., :8]

    torch.manual_seed(0)
    enc = LPMAudioEncoder(AudioConfig(frontend="wav2vec2"), frontend=Hop320())
    assert enc(_pcm(SR)).shape == (1, 24, 128)
    with pytest.raises(ValueError, match="front end"):
        LPMAudioEncoder(AudioConfig(frontend="wav2vec2"))


def test_receptive_field_must_fit_the_context():
    with pytest.raises(ValueError, match="context_seconds"):
        LPMAudioEncoder(AudioConfig(context_seconds=0.1))


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_presets_build(preset):
    cfg = LPMConfig.preset(preset).audio
    enc = LPMAudioEncoder(cfg)
    with torch.no_grad():
        assert enc(_pcm(SR)).shape == (1, 24, cfg.feature_dim)
