"""The decoder's voice (model_core/vae_audio.py): per-frame features that stay inside each
frame's span, a path that starts as a no-op, streaming that equals whole-clip decoding with
audio too, and audio that actually changes the frames once the path has weights."""

from __future__ import annotations

import math

import pytest
import torch

from model_core.config import VAEConfig
from model_core.vae import LPMCausalVAE
from model_core.vae_audio import WINDOW, frame_audio_features, frame_ends, pool_frames

SR, FPS = 16000, 24
SPF = SR / FPS
CFG = VAEConfig(base_channels=8, channel_mults=(1, 2, 2), decoder_audio=16)


def _vae(cfg: VAEConfig = CFG, trained: bool = True, seed: int = 0) -> LPMCausalVAE:
    torch.manual_seed(seed)
    vae = LPMCausalVAE(cfg, SR, SPF).eval()
    if trained and vae.hears:  # give the zero-initialised residuals weights
        for p in vae.decoder.audio_inject.parameters():
            torch.nn.init.normal_(p, std=0.3)
    return vae


def _pcm(frames: int, seed: int = 3, lead: int = 1000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = math.ceil(frames * SPF) + lead
    env = torch.rand(frames, generator=g).repeat_interleave(math.ceil(SPF))[:n]
    env = torch.nn.functional.pad(env, (n - len(env), 0))
    return (env * torch.randn(n, generator=g)).view(1, -1)


def test_frames_end_with_the_track_and_windows_stay_in_their_frame():
    ends = frame_ends(24, SR, SPF)
    assert int(ends[-1]) == SR and int(ends[0]) == round(SPF)
    assert bool((ends.diff() >= WINDOW).all())  # a window never reaches into the frame before


def test_features_follow_loudness_and_only_the_frames_own_window():
    pcm = torch.zeros(1, SR)
    loud = 10
    end = int(frame_ends(24, SR, SPF)[loud])
    pcm[0, end - WINDOW : end] = torch.randn(WINDOW)
    f = frame_audio_features(pcm, 24, SPF, SR)
    assert f.shape == (1, 24, 33)
    level = f[0, :, -1]  # log RMS
    assert int(level.argmax()) == loud
    others = torch.cat([level[:loud], level[loud + 1 :]])
    assert float(others.max()) < float(level[loud]) - 1.0


def test_features_of_a_short_track_hear_silence_before_it():
    f = frame_audio_features(torch.ones(1, 100), 3, SPF, SR)
    assert float(f[0, 0, -1]) == pytest.approx(math.log(1e-8) / 10)  # all before the track
    assert float(f[0, 2, -1]) > float(f[0, 0, -1])


def test_pool_frames_keeps_frame_zero_alone_at_a_stream_start():
    emb = torch.arange(9, dtype=torch.float32).view(1, 9, 1)
    assert pool_frames(emb, 4, start=True).view(-1).tolist() == [0.0, 2.5, 6.5]
    assert pool_frames(emb[:, 1:], 2, start=False).view(-1).tolist() == [1.5, 3.5, 5.5, 7.5]
    with pytest.raises(ValueError, match="groups of 4"):
        pool_frames(emb[:, :7], 4, start=False)


def test_the_new_path_starts_as_a_no_op():
    torch.manual_seed(0)
    plain = LPMCausalVAE(VAEConfig(base_channels=8, channel_mults=(1, 2, 2)), SR, SPF).eval()
    hearing = _vae(trained=False)
    hearing.load_state_dict(plain.state_dict(), strict=False)
    z = torch.randn(1, 16, 4, 2, 3)
    with torch.no_grad():
        a = plain.decode(z)
        b = hearing.decode(z, audio=_pcm(13))
    assert torch.equal(a, b)
    # a decoder without the path ignores audio
    with torch.no_grad():
        assert torch.equal(plain.decode(z, audio=_pcm(13)), a)


def test_audio_changes_the_frames_of_a_decoder_that_hears():
    vae = _vae()
    z = torch.randn(1, 16, 4, 2, 3)
    with torch.no_grad():
        quiet = vae.decode(z)  # None: silence
        silent = vae.decode(z, audio=torch.zeros(1, 13 * 700))
        loud = vae.decode(z, audio=_pcm(13))
    assert torch.allclose(quiet, silent, atol=1e-6)
    assert float((loud - quiet).abs().mean()) > 1e-3


# Pushes end on whole multiples of 3 frames before the clip's end (3 frames = 2000 samples at
# 16 kHz and 24 fps), as the Online stream's 1-second chunks do: frame windows then fall on
# the same samples however the clip is split.
@pytest.mark.parametrize("cuts", [[1], [1, 13], [13]])
def test_streaming_with_audio_equals_the_whole_clip(cuts):
    vae = _vae()
    t_lat = 7
    z = torch.randn(1, 16, t_lat, 2, 3)
    frames = 1 + 4 * (t_lat - 1)
    pcm = _pcm(frames)
    with torch.no_grad():
        whole = vae.decode(z, audio=pcm)
        dec = vae.stream_decoder()
        out, done_lat = [], 0
        bounds = [0, *cuts, frames]
        for a, b in zip(bounds[:-1], bounds[1:]):
            n_lat = 1 + (b - 1) // 4 - done_lat if a == 0 else (b - a) // 4
            end = pcm.shape[1] - round((frames - b) * SPF)
            out.append(dec.push(z[:, :, done_lat : done_lat + n_lat], audio=pcm[:, :end]))
            done_lat += n_lat
    assert torch.allclose(torch.cat(out, dim=2), whole, atol=1e-5)


def test_bad_audio_is_refused_with_its_shape():
    vae = _vae()
    with pytest.raises(ValueError, match="decoder audio must be"):
        vae.decode(torch.randn(2, 16, 2, 2, 3), audio=torch.zeros(1, 2000))
    with pytest.raises(ValueError, match="decoder audio must be"):
        vae.decode(torch.randn(1, 16, 2, 2, 3), audio=torch.zeros(2000))
