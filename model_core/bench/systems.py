"""The systems LPM-Bench-mini compares, each a way to turn a sample's references and audio
into frames:

- `ground_truth`: the performer's own footage (the ceiling every metric is read against);
- `vae_roundtrip`: that footage streamed through the model's own causal VAE (encoder and
  decoder, chunk by chunk with their temporal caches): the ceiling of any generator that
  draws in this VAE's latent space, since every system's frames come out of its decoder;
- `base`: the Base LPM, bidirectional multi-step sampling of the whole clip;
- `online`: the Online LPM, 1-second chunks through the sink + window KV cache;
- `untrained`: the Online pipeline with random weights (the floor);
- `no_sink`: Online without the attention sink (references are evicted with the window);
- `single_ref`: Online with only the global reference image (no body views, no faces);
- `merged_audio`: Online fed one merged audio stream (speaking + listening mixed) on both
  tracks instead of the two separate tracks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the CLI reads SYSTEMS without loading the performer
    from model_core.bench.scenarios import ScenarioSample

SYSTEMS = (
    "ground_truth",
    "vae_roundtrip",
    "base",
    "online",
    "untrained",
    "no_sink",
    "single_ref",
    "merged_audio",
)
STREAMING = ("online", "untrained", "no_sink", "single_ref", "merged_audio")
SR = 16000


@dataclass
class SystemRunner:
    """Renders samples for one system with one pipeline (None for ground truth)."""

    name: str
    pipe: object | None = None
    base_steps: int = 8
    seed: int = 0

    def references(self, sample: ScenarioSample):
        enc = self.pipe.encode_references(sample.model_refs)
        return enc.only_global() if self.name == "single_ref" else enc

    def tracks(self, speak: np.ndarray, listen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "merged_audio":
            mixed = np.clip(speak + listen, -1, 1).astype(np.float32)
            return mixed, mixed
        return speak, listen

    def render(self, sample: ScenarioSample) -> np.ndarray:
        if self.name == "ground_truth":
            return sample.frames
        if self.name == "vae_roundtrip":
            return vae_roundtrip(self.pipe.model.vae, sample.frames, speak=sample.speak)
        seconds = sample.spec.seconds
        caption = sample.identity.describe()
        if self.name == "base":
            return self.pipe.render_base(
                self.references(sample),
                sample.speak,
                sample.listen,
                text=caption,
                seconds=seconds,
                steps=self.base_steps,
                seed=self.seed + sample.spec.index,
            )
        return np.concatenate(list(self.stream(sample, sample.speak, sample.listen, seconds)))

    def stream(
        self, sample: ScenarioSample, speak: np.ndarray, listen: np.ndarray, seconds: int
    ) -> Iterator[np.ndarray]:
        """Frames of `seconds` chunks, one chunk at a time; the audio loops if shorter."""
        if self.name not in STREAMING:
            raise ValueError(f"{self.name} does not stream")
        s_track, l_track = self.tracks(speak, listen)
        stream = self.pipe.start_stream(
            self.references(sample),
            text=sample.identity.describe(),
            seed=self.seed + sample.spec.index,
            keep_sink=self.name != "no_sink",
        )
        n = len(s_track)
        for k in range(seconds):
            idx = (np.arange(k * SR, (k + 1) * SR)) % n
            yield stream.push(s_track[idx], l_track[idx]).frames


def vae_roundtrip(
    vae, frames: np.ndarray, chunk: int = 24, speak: np.ndarray | None = None
) -> np.ndarray:
    """uint8 (T, H, W, 3) -> the same frames encoded and decoded as a stream: frame 0 alone,
    then `chunk`-frame pushes through the stream encoder and decoder (the tail is padded by
    repeating the last frame, and cut off again). `speak`, the character's voice over the T
    frames (PCM at the VAE's sample rate), reaches a decoder that hears; silence beyond it."""
    import torch

    n = len(frames)
    pad = (-(n - 1)) % 4
    x = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)]) if pad else frames
    video = torch.as_tensor(np.ascontiguousarray(x)).permute(3, 0, 1, 2).float() / 127.5 - 1
    enc, dec = vae.stream_encoder(), vae.stream_decoder()
    bounds = [0, 1, *range(1 + chunk, len(x), chunk), len(x)]
    pcm = None
    if speak is not None:
        need = int(np.ceil(len(x) * vae.samples_per_frame))
        pcm = torch.zeros(need)
        s = torch.as_tensor(np.asarray(speak, np.float32)).view(-1)[:need]
        pcm[: len(s)] = s
    out = []
    with torch.no_grad():
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                audio = None
                if pcm is not None:
                    audio = pcm[: int(round(b * vae.samples_per_frame))][None]
                out.append(dec.push(enc.push(video[None, :, a:b]), audio=audio))
    y = torch.cat(out, dim=2)[0].permute(1, 2, 3, 0)
    return ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()[:n]
