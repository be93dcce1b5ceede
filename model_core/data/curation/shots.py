"""Stage 1, single-shot extraction: find cuts and gradual transitions, split into shots.

Frames are reduced to 16x16 colour thumbnails (block means, which also average away sensor
noise). A cut is a single-step thumbnail difference far above its neighbourhood; a gradual
transition (dissolve, fade) is a stretch where the difference across a 16-frame span is large
while every single step stays small and the whole frame changes, not just a moving arm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from model_core.data.curation.source import RawRecording


@dataclass
class ShotConfig:
    thumb: int = 16
    cut_abs: float = 9.0  # mean abs thumbnail difference (0..255) for a cut
    cut_ratio: float = 4.0  # and this many times the local median difference
    span: int = 16  # frames across which gradual change is measured
    gradual_abs: float = 14.0
    gradual_cells: float = 0.5  # fraction of thumbnail cells that must change


def thumbnails(frames: np.ndarray, size: int = 16) -> np.ndarray:
    t, h, w, _ = frames.shape
    bh, bw = h // size, w // size
    x = frames[:, : bh * size, : bw * size].reshape(t, size, bh, size, bw, 3)
    return x.mean(axis=(2, 4), dtype=np.float32)


def detect_transitions(frames: np.ndarray, cfg: ShotConfig | None = None) -> list[dict]:
    """Transitions as {"type": "cut"|"gradual", "start": f, "end": f}: frames [start, end)
    belong to the transition (a cut at frame f is [f, f))."""
    cfg = cfg or ShotConfig()
    th = thumbnails(frames, cfg.thumb)
    n = len(th)
    if n < 2:
        return []
    step = np.zeros(n, np.float32)
    step[1:] = np.abs(th[1:] - th[:-1]).mean(axis=(1, 2, 3))
    out: list[dict] = []
    # Local median of the step differences around each frame (window of 25, edge-padded).
    padded = np.pad(step[1:], 12, mode="edge")
    local = np.zeros(n, np.float32)
    local[1:] = np.median(np.lib.stride_tricks.sliding_window_view(padded, 25), axis=1)
    # A cut is an isolated spike: far above its neighbourhood and above both adjacent steps
    # (a dissolve's steps are all alike).
    adjacent = np.maximum(np.concatenate([[0], step[:-1]]), np.concatenate([step[1:], [0]]))
    cut_at = (
        (step > cfg.cut_abs)
        & (step > cfg.cut_ratio * np.maximum(local, 0.5))
        & (step > 2.5 * adjacent)
    )
    cut_at[0] = False
    out: list[dict] = [
        {"type": "cut", "start": int(t), "end": int(t)} for t in np.flatnonzero(cut_at)
    ]
    # Gradual transitions: large change across `span`, no cut inside, most cells changing.
    half = cfg.span // 2
    idx = np.arange(n)
    a, b = np.clip(idx - half, 0, n - 1), np.clip(idx + half, 0, n - 1)
    diff = np.abs(th[b] - th[a])
    span_diff = diff.mean(axis=(1, 2, 3))
    cells = (diff.max(axis=3) > 12).mean(axis=(1, 2))
    cum_cuts = np.concatenate([[0], np.cumsum(cut_at)])
    has_cut = (cum_cuts[np.minimum(b + 1, n)] - cum_cuts[a]) > 0
    cand = (span_diff > cfg.gradual_abs) & (cells > cfg.gradual_cells) & ~has_cut
    t = 0
    while t < n:
        if not cand[t]:
            t += 1
            continue
        r = t
        while r + 1 < n and cand[r + 1]:
            r += 1
        c = t + int(np.argmax(span_diff[t : r + 1]))
        level = float(np.median(step[max(c - 2, 1) : c + 3]))
        s, e = c, c
        while s - 1 > 0 and step[s - 1] > 0.4 * level and c - s < cfg.span:
            s -= 1
        while e + 1 < n and step[e + 1] > 0.4 * level and e - c < cfg.span:
            e += 1
        if r - t + 1 >= 3:
            out.append({"type": "gradual", "start": int(max(s - 1, 0)), "end": int(min(e + 1, n))})
        t = r + 1
    out.sort(key=lambda d: d["start"])
    return out


def split_shots(n: int, transitions: list[dict]) -> list[tuple[int, int]]:
    shots, start = [], 0
    for tr in transitions:
        if tr["start"] > start:
            shots.append((start, tr["start"]))
        start = max(start, tr["end"] if tr["type"] == "gradual" else tr["start"])
    if n > start:
        shots.append((start, n))
    return shots


def extract_shots(rec: RawRecording, cfg: ShotConfig | None = None) -> dict:
    """Stage 1 on one recording -> manifest: transitions found, shots, frames kept/dropped."""
    t0 = time.perf_counter()
    trans = detect_transitions(rec.frames, cfg)
    shots = split_shots(rec.num_frames, trans)
    kept = sum(e - s for s, e in shots)
    return {
        "stage": "shots",
        "recording": rec.name,
        "frames_in": rec.num_frames,
        "frames_kept": kept,
        "transitions": trans,
        "shots": [{"id": i, "start": s, "end": e} for i, (s, e) in enumerate(shots)],
        "dropped": [
            {"start": t["start"], "end": t["end"], "reason": "transition"}
            for t in trans
            if t["type"] == "gradual"
        ],
        "seconds": round(time.perf_counter() - t0, 4),
    }
