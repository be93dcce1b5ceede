"""Frames of one sample -> its metrics: the judges read the frames once, and every metric is
computed from what they read and the sample's ground truth (audio, dialogue state, pose)."""

from __future__ import annotations

import numpy as np

from model_core.bench.judges import Judges, probe_crop
from model_core.bench.metrics.flicker import flicker
from model_core.bench.metrics.identity import frame_similarity, identity_scores
from model_core.bench.metrics.lip_sync import lip_sync_score
from model_core.bench.metrics.listening import (
    listening_counts,
    listening_score,
    reaction_frames,
    vertical_shift,
)
from model_core.bench.metrics.mouth_motion import mouth_motion
from model_core.bench.scenarios import ScenarioSample


def reference_embeddings(judges: Judges, sample: ScenarioSample) -> np.ndarray:
    refs = sample.refs
    images = [refs.global_image, *refs.body.values(), *refs.face.values()]
    return judges.embedder.embed(np.stack(images))


def analyze_frames(
    frames: np.ndarray, sample: ScenarioSample, judges: Judges, ref_emb: np.ndarray
) -> dict:
    """Per-sample metrics of `frames` (uint8 (T, H, W, 3), T = the sample's length)."""
    n = len(sample.state)
    if len(frames) != n:
        raise ValueError(f"{sample.spec.name}: {len(frames)} frames for a {n}-frame sample")
    probe = judges.probe.predict(frames)
    sim = frame_similarity(judges.embedder.embed(frames), ref_emb)
    speaking = sample.state == "speaking"
    flick = flicker(frames)
    shift = vertical_shift(probe_crop(frames))
    reaction = reaction_frames(probe["pitch"], probe["brow"], shift, flick)
    counts = listening_counts(reaction, sample.listen_context, sample.silent_context)
    return {
        "lip_sync": lip_sync_score(probe["mouth_open"], sample.speech_energy, speaking),
        "mouth_motion": mouth_motion(probe["mouth_open"], sample.mouth_open, speaking),
        **identity_scores(sim, sample.head_yaw),
        "listening": listening_score(counts),
        "listening_counts": counts.tolist(),
        "flicker": flick,
    }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def aggregate(per_sample: list[dict]) -> dict:
    """System-level metrics: means over the samples that can show each metric; listening
    pools its frame counts over all samples (a 4 s sample holds little silence)."""
    counts = np.sum([m["listening_counts"] for m in per_sample] or [np.zeros(4, np.int64)], axis=0)
    return {
        "lip_sync": _mean(m["lip_sync"] for m in per_sample),
        "mouth_motion": _mean(m.get("mouth_motion") for m in per_sample),
        "identity": _mean(m["identity"] for m in per_sample),
        "identity_turned": _mean(m["identity_turned"] for m in per_sample),
        "listening": listening_score(counts),
        "flicker": _mean(m["flicker"] for m in per_sample),
        "samples": len(per_sample),
    }
