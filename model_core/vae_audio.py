"""The decoder's voice: per-video-frame audio for the causal VAE decoder.

The latent sequence runs at a quarter of the frame rate (4x temporal compression), and a
syllable lasts about as long as one latent frame: the mouth's frame-to-frame opening is
exactly the detail four frames squeezed into one latent lose (measured in
docs/training.md: the round trip of ground-truth footage through the tiny VAE keeps under
60% of its lip sync). When `VAEConfig.decoder_audio` is set, the decoder is also given the
character's own voice at the video frame rate and may draw the mouth from it inside each
group of four frames.

- `frame_audio_features`: PCM -> one fixed feature vector per output frame: the log power in
  `BANDS` mel-spaced bands of the `WINDOW` samples that end with that frame, and their log
  RMS. A frame's window lies inside its own span of the track (640 samples; a frame is 667
  at 16 kHz and 24 fps), so a stream decoded push by push sees the same features as the
  whole clip, and no frame waits for audio after it.
- `LPMDecoderAudio`: the features -> an embedding per frame (a small MLP).
- `LPMAudioInject`: adds an audio-dependent residual to a decoder level's feature map: a
  per-position gate computed from the features there and the frame's embedding, so the
  residual can land on the mouth and nowhere else. Its output layer starts at zero: a
  decoder given the path behaves exactly as before until it is trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WINDOW = 640  # samples per frame's window (40 ms at 16 kHz)
BANDS = 32
FEATURES = BANDS + 1


def _band_matrix(sample_rate: int, window: int = WINDOW, bands: int = BANDS) -> Tensor:
    """(window // 2 + 1, bands) triangular mel-spaced bands over 60 Hz .. Nyquist."""
    bins = window // 2 + 1
    freqs = torch.linspace(0, sample_rate / 2, bins)

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    lo, hi = mel(60.0), mel(sample_rate / 2)
    edges = torch.tensor(
        [
            700.0 * (10 ** ((lo + (hi - lo) * i / (bands + 1)) / 2595.0) - 1)
            for i in range(bands + 2)
        ]
    )
    m = torch.zeros(bins, bands)
    for b in range(bands):
        a, c, d = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - a) / (c - a).clamp_min(1e-6)
        down = (d - freqs) / (d - c).clamp_min(1e-6)
        m[:, b] = torch.clamp(torch.minimum(up, down), min=0.0)
    return m / m.sum(dim=0, keepdim=True).clamp_min(1e-6)


def frame_ends(num_frames: int, num_samples: int, samples_per_frame: float) -> Tensor:
    """End sample (exclusive) of each of `num_frames` frames whose last one ends with the
    PCM's last sample."""
    back = torch.arange(num_frames - 1, -1, -1, dtype=torch.float64) * samples_per_frame
    return (num_samples - torch.round(back)).long()


def frame_audio_features(
    pcm: Tensor, num_frames: int, samples_per_frame: float, sample_rate: int
) -> Tensor:
    """PCM (B, S), ending with the last frame -> (B, num_frames, FEATURES) features. Windows
    that reach before the PCM's first sample see zeros there (silence)."""
    if pcm.dim() != 2:
        raise ValueError(f"decoder audio must be (B, samples), got {tuple(pcm.shape)}")
    b, s = pcm.shape
    ends = frame_ends(num_frames, s, samples_per_frame)
    pad = max(0, WINDOW - int(ends.min()))
    x = F.pad(pcm.float(), (pad, 0))
    idx = (ends + pad)[:, None] - WINDOW + torch.arange(WINDOW)[None, :]  # (T, WINDOW)
    frames = x[:, idx]  # (B, T, WINDOW)
    hann = torch.hann_window(WINDOW, periodic=False, dtype=frames.dtype)
    power = torch.fft.rfft(frames * hann, dim=-1).abs().pow(2) / WINDOW
    bands = power @ _band_matrix(sample_rate).to(power.dtype)
    rms = frames.pow(2).mean(dim=-1, keepdim=True)
    return torch.cat([torch.log(bands + 1e-8), torch.log(rms + 1e-8)], dim=-1) / 10.0


def silence_features(batch: int, frames: int, like: Tensor) -> Tensor:
    """What `frame_audio_features` gives for all-zero PCM."""
    return like.new_full((batch, frames, FEATURES), math.log(1e-8) / 10.0)


class LPMDecoderAudio(nn.Module):
    """(B, T, FEATURES) per-frame features -> (B, T, dim) embeddings."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU()
        )

    def forward(self, feats: Tensor) -> Tensor:
        return self.net(feats)


class LPMAudioInject(nn.Module):
    """x (B, T, C, H, W) + out(silu(in_x(x) + in_a(e))) with e (B, T, dim) the frame's
    embedding; `out` starts at zero."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.in_x = nn.Conv2d(channels, channels, 1)
        self.in_a = nn.Linear(dim, channels)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        if emb.shape[:2] != (b, t):
            raise ValueError(f"audio embedding {tuple(emb.shape)} does not match {t} frames")
        flat = x.reshape(b * t, c, h, w)
        gate = F.silu(self.in_x(flat) + self.in_a(emb).reshape(b * t, c, 1, 1))
        return x + self.out(gate).reshape(b, t, c, h, w)


def pool_frames(emb: Tensor, group: int, start: bool) -> Tensor:
    """Full-rate embeddings (B, T, D) -> the rate of a level `group` times slower: frame 0
    alone when the push starts a stream, then the mean of each group of `group` frames."""
    if group == 1:
        return emb
    head, rest = (emb[:, :1], emb[:, 1:]) if start else (emb[:, :0], emb)
    b, t, d = rest.shape
    if t % group:
        raise ValueError(f"{t} frames do not split into groups of {group}")
    return torch.cat([head, rest.reshape(b, t // group, group, d).mean(dim=2)], dim=1)
