"""Causal audio encoder: raw 16 kHz mono PCM -> one feature vector per 24 fps video frame.

Pipeline: a causal front end (log-mel by default: STFT and mel filterbank built here, no
torchaudio) -> a stack of dilated causal 1D convolutions -> sampling at the video frame grid.

Timing and rounding. Video frame i spans [i/fps, (i+1)/fps) seconds; it *ends* at sample
`end_i = ceil((i+1) * sample_rate / fps)` (exclusive; 667, 1334, 2000, ... at 16 kHz / 24 fps).
A signal of N samples yields `floor(N * fps / sample_rate)` features: only complete frames,
a trailing partial frame is dropped (pad the PCM to whole seconds to get every frame).

Causality. Feature i depends only on samples in [end_i - receptive_field_samples, end_i):
front-end frame j looks at samples before (j+1)*hop, the conv stack only at earlier front-end
frames, and feature i is read at the last front-end frame that ends by end_i. So changing a
sample at or after end_i never changes features 0..i, and `LPMAudioStream` can encode one
second at a time, keeping just `receptive_field_samples` of left context, with the same output
as encoding the whole signal.

Other front ends. `AudioFeatureExtractor` is the protocol the encoder needs from its front end;
any causal extractor with a fixed hop (for example a wav2vec2 feature encoder run with a
bounded left context: hop 320, dim 768) can be passed as `LPMAudioEncoder(cfg, frontend=...)`.
A bidirectional wav2vec2 transformer is not causal and would break streaming equality.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_core.config import AudioConfig


@runtime_checkable
class AudioFeatureExtractor(Protocol):
    """A causal front end: (B, N) PCM -> (B, N // hop_length, out_dim) frames, where frame j
    depends only on samples in [(j+1)*hop_length - receptive_field_samples, (j+1)*hop_length)."""

    hop_length: int
    out_dim: int
    receptive_field_samples: int

    def __call__(self, pcm: Tensor) -> Tensor: ...


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular HTK-mel filterbank, (n_fft // 2 + 1, n_mels), Slaney area-normalised."""
    f_max = f_max if f_max is not None else sample_rate / 2
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    mel_pts = torch.linspace(mel(f_min), mel(f_max), n_mels + 2, dtype=torch.float64)
    hz_pts = 700.0 * (10 ** (mel_pts / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = hz_pts[:-2, None], hz_pts[1:-1, None], hz_pts[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = torch.clamp(torch.minimum(up, down), min=0.0) * (2.0 / (hi - lo))
    return fb.T.to(torch.float32).contiguous()


class LogMelFrontEnd(nn.Module):
    """Causal log-mel spectrogram: frame j is the Hann-windowed STFT of the `win_length`
    samples ending at (j+1)*hop_length (zeros before the signal start)."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.hop_length = cfg.hop_length
        self.win_length = cfg.win_length
        self.out_dim = cfg.n_mels
        self.receptive_field_samples = cfg.win_length
        self.register_buffer(
            "window", torch.hann_window(cfg.win_length, periodic=True), persistent=False
        )
        self.register_buffer(
            "mel_fb", mel_filterbank(cfg.sample_rate, cfg.win_length, cfg.n_mels), persistent=False
        )

    def forward(self, pcm: Tensor) -> Tensor:
        x = F.pad(pcm, (self.win_length - self.hop_length, 0))
        frames = x.unfold(-1, self.win_length, self.hop_length)  # (B, N // hop, win)
        power = torch.fft.rfft(frames * self.window).abs().pow(2)
        # Fixed affine instead of per-utterance normalisation, which would look at the future.
        return (torch.log(power @ self.mel_fb + 1e-6) + 4.0) / 4.0


class LPMCausalConvLayer(nn.Module):
    """Residual pre-norm dilated causal conv over time: x + conv(gelu(norm(x)))."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C)
        h = F.gelu(self.norm(x)).transpose(1, 2)
        return x + self.conv(F.pad(h, (self.pad, 0))).transpose(1, 2)


class LPMAudioEncoder(nn.Module):
    """Raw PCM (B, N) at `cfg.sample_rate` -> per-video-frame features (B, T, feature_dim),
    T = floor(N * fps / sample_rate). Causal with a finite left receptive field
    (`receptive_field_samples`); see the module docstring for the exact timing."""

    def __init__(
        self, cfg: AudioConfig, frontend: AudioFeatureExtractor | None = None, fps: int = 24
    ) -> None:
        super().__init__()
        if frontend is None:
            if cfg.frontend != "logmel":
                raise ValueError(
                    f"audio front end {cfg.frontend!r} is not built in; pass an AudioFeatureExtractor as `frontend`"
                )
            frontend = LogMelFrontEnd(cfg)
        self.cfg = cfg
        self.fps = fps
        self.sample_rate = cfg.sample_rate
        self.frontend = frontend
        self.hop_length = frontend.hop_length
        self.in_proj = nn.Linear(frontend.out_dim, cfg.hidden)
        self.layers = nn.ModuleList(
            LPMCausalConvLayer(cfg.hidden, cfg.kernel_size, d) for d in cfg.dilations
        )
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.out_proj = nn.Linear(cfg.hidden, cfg.feature_dim)
        conv_frames = 1 + (cfg.kernel_size - 1) * sum(cfg.dilations)
        # Front-end frames read by the convs, plus up to hop-1 samples between the last
        # front-end frame's end and the video frame's end.
        self.receptive_field_samples = (
            frontend.receptive_field_samples
            + (conv_frames - 1) * self.hop_length
            + self.hop_length
            - 1
        )
        if self.receptive_field_samples > cfg.context_seconds * cfg.sample_rate:
            raise ValueError(
                f"audio encoder looks back {self.receptive_field_samples} samples, more than "
                f"context_seconds={cfg.context_seconds} allows"
            )

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    def num_frames(self, num_samples: int) -> int:
        """Complete video frames in `num_samples` samples."""
        return num_samples * self.fps // self.sample_rate

    def frame_end_sample(self, i: Tensor | int) -> Tensor | int:
        """Exclusive end sample of video frame i: ceil((i+1) * sample_rate / fps)."""
        return ((i + 1) * self.sample_rate + self.fps - 1) // self.fps

    def forward(self, pcm: Tensor) -> Tensor:
        if pcm.dim() != 2:
            raise ValueError(f"pcm must be (B, N), got {tuple(pcm.shape)}")
        return self._encode(pcm, offset=0, first_frame=0, num_frames=self.num_frames(pcm.shape[1]))

    def _encode(self, pcm: Tensor, offset: int, first_frame: int, num_frames: int) -> Tensor:
        """Features of video frames [first_frame, first_frame + num_frames) from `pcm`, which
        holds the signal's samples [offset, offset + N); offset is a multiple of the hop."""
        if num_frames == 0:
            return pcm.new_zeros(pcm.shape[0], 0, self.cfg.feature_dim)
        h = self.in_proj(self.frontend(pcm))
        for layer in self.layers:
            h = layer(h)
        frames = torch.arange(first_frame, first_frame + num_frames, device=pcm.device)
        # The last front-end frame that ends no later than the video frame does.
        idx = self.frame_end_sample(frames) // self.hop_length - 1 - offset // self.hop_length
        return self.out_proj(self.norm_out(h[:, idx]))

    def stream(self, batch: int = 1) -> LPMAudioStream:
        return LPMAudioStream(self, batch)


class LPMAudioStream:
    """Encodes a PCM stream push by push (typically 1 s = sample_rate samples, giving `fps`
    features), keeping only the left context the encoder can see. The features returned over
    all pushes equal `encoder(whole_signal)` (up to float rounding of differently sized convs).

    Pushes of any length work; a push returns the features of the frames it completed.
    """

    def __init__(self, encoder: LPMAudioEncoder, batch: int = 1) -> None:
        self.encoder = encoder
        self.batch = batch
        hop = encoder.hop_length
        # One extra hop of margin, rounded to whole hops so front-end frames stay on the grid.
        self.context_samples = (math.ceil(encoder.receptive_field_samples / hop) + 1) * hop
        self.reset()

    def reset(self) -> None:
        self.buffer: Tensor | None = None  # samples [buffer_start, samples_seen)
        self.buffer_start = 0
        self.samples_seen = 0
        self.frames_out = 0

    def push(self, pcm: Tensor) -> Tensor:
        """pcm (B, n) or (n,) -> features (B, frames, feature_dim) or (frames, feature_dim)."""
        squeeze = pcm.dim() == 1
        pcm = pcm.view(1, -1) if squeeze else pcm
        if pcm.shape[0] != self.batch:
            raise ValueError(
                f"stream was opened for batch {self.batch}, got pcm {tuple(pcm.shape)}"
            )
        enc = self.encoder
        buf = pcm if self.buffer is None else torch.cat([self.buffer, pcm], dim=1)
        self.samples_seen += pcm.shape[1]
        total_frames = enc.num_frames(self.samples_seen)
        out = enc._encode(buf, self.buffer_start, self.frames_out, total_frames - self.frames_out)
        self.frames_out = total_frames
        # Keep the context of the next frame; its window starts after the last completed frame's end.
        keep_from = max(0, self.samples_seen - self.context_samples)
        keep_from -= keep_from % enc.hop_length
        self.buffer = buf[:, keep_from - self.buffer_start :]
        self.buffer_start = keep_from
        return out[0] if squeeze else out
