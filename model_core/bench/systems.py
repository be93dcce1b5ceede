"""The systems LPM-Bench-mini compares, each a way to turn a sample's references and audio
into frames:

- `ground_truth`: the performer's own footage (the ceiling every metric is read against);
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

import numpy as np

from model_core.bench.scenarios import ScenarioSample

SYSTEMS = ("ground_truth", "base", "online", "untrained", "no_sink", "single_ref", "merged_audio")
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
        enc = self.pipe.encode_references(sample.refs)
        return enc.only_global() if self.name == "single_ref" else enc

    def tracks(self, speak: np.ndarray, listen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "merged_audio":
            mixed = np.clip(speak + listen, -1, 1).astype(np.float32)
            return mixed, mixed
        return speak, listen

    def render(self, sample: ScenarioSample) -> np.ndarray:
        if self.name == "ground_truth":
            return sample.frames
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
