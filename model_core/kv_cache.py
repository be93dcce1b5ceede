"""The Online model's KV cache: an attention sink that is never evicted plus a sliding window.

The sink holds the reference tokens' keys/values (computed once per stream). The window holds
the keys/values of the last W generated chunks, stored *before* rotary embedding so that each
chunk can be re-rotated at window-relative positions: positions stay bounded however long the
stream runs, and because RoPE scores depend only on position differences, the result equals
attending at absolute positions. Memory and cost per chunk are constant once the window fills.
"""

from __future__ import annotations

from collections import deque

import torch

from model_core.dit import LPMKVPrefix, LPMSink, LPMTransformer
from model_core.rope import apply_rope


class SinkWindowKVCache:
    def __init__(
        self,
        sink: LPMSink,
        window_chunks: int | None,
        frames_per_chunk: int,
        grid_hw: tuple[int, int],
        video_rope_offset: int,
    ):
        self.sink = sink
        # window_chunks=None keeps every chunk: the naive full-history baseline.
        self.chunks: deque[list[tuple[torch.Tensor, torch.Tensor]]] = deque(maxlen=window_chunks)
        self.frames_per_chunk = frames_per_chunk
        self.grid_hw = grid_hw
        self.offset = video_rope_offset
        self._prefix: LPMKVPrefix | None = None

    def __len__(self) -> int:
        return len(self.chunks)

    def current_frame_pos(self) -> torch.Tensor:
        """Temporal positions of the chunk being generated: right after the window."""
        start = self.offset + len(self.chunks) * self.frames_per_chunk
        return torch.arange(start, start + self.frames_per_chunk)

    def prefix(self, rope_tables) -> LPMKVPrefix | None:
        """Window keys rotated at window-relative positions; built once per chunk."""
        if not self.chunks:
            return None
        if self._prefix is None:
            n = len(self.chunks) * self.frames_per_chunk
            grid = (n, *self.grid_hw)
            pos = LPMTransformer.grid_positions(grid, t0=self.offset)
            cos, sin = rope_tables(pos)
            layers = len(self.chunks[0])
            ks = [torch.cat([c[i][0] for c in self.chunks], 1) for i in range(layers)]
            vs = [torch.cat([c[i][1] for c in self.chunks], 1) for i in range(layers)]
            self._prefix = LPMKVPrefix([apply_rope(k, cos, sin) for k in ks], vs, pos)
        return self._prefix

    def append(self, kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.chunks.append([(k.detach(), v.detach()) for k, v in kvs])
        self._prefix = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The window as tensors, e.g. to rebuild a stream on another replica."""
        out = {}
        for j, chunk in enumerate(self.chunks):
            for i, (k, v) in enumerate(chunk):
                out[f"{j}.{i}.k"], out[f"{j}.{i}.v"] = k, v
        return out

    def nbytes(self) -> int:
        total = sum(k.nbytes + v.nbytes for k, v in zip(self.sink.k, self.sink.v, strict=True))
        return total + sum(k.nbytes + v.nbytes for c in self.chunks for k, v in c)
