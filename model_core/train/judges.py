"""The automatic judge that labels DPO preference pairs.

The interface agreed with LPM-Bench-mini is one callable, `score(frames, audio, refs) ->
float` (higher is better): frames uint8 (T, H, W, 3), audio the speaking track as float32
16 kHz PCM covering the same T frames, refs the `ReferenceImages` of the identity. When
`model_core.bench.judges` provides it, that judge is used; otherwise this module's simple,
honest one:

- lip sync: Pearson correlation between the per-frame motion energy of the lower-middle of
  the frame (where the performer's mouth sits in every framing it uses) and the speaking
  track's per-frame loudness;
- identity: cosine similarity of colour statistics (per-channel 8-bin histograms over a
  4x4 grid) between the frames and the global reference image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model_core.references import ReferenceImages

Judge = Callable[[np.ndarray, np.ndarray, ReferenceImages], float]


def audio_energy(pcm: np.ndarray, frames: int) -> np.ndarray:
    """RMS of the PCM over each of `frames` equal spans."""
    pcm = np.asarray(pcm, np.float32).reshape(-1)
    n = max(1, len(pcm) // frames)
    pcm = np.pad(pcm, (0, max(0, n * frames - len(pcm))))[: n * frames]
    return np.sqrt((pcm.reshape(frames, n) ** 2).mean(axis=1))


def mouth_motion(frames: np.ndarray) -> np.ndarray:
    """Mean absolute frame difference over the lower-middle region, one value per frame."""
    t, h, w = frames.shape[:3]
    region = frames[:, int(0.35 * h) : int(0.8 * h), int(0.3 * w) : int(0.7 * w)].astype(np.float32)
    diff = np.abs(np.diff(region, axis=0)).mean(axis=(1, 2, 3))
    return np.concatenate([diff[:1], diff]) if t > 1 else np.zeros(t, np.float32)


def lip_sync(frames: np.ndarray, pcm: np.ndarray) -> float:
    motion, energy = mouth_motion(frames), audio_energy(pcm, len(frames))
    if motion.std() < 1e-6 or energy.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(motion, energy)[0, 1])


def color_signature(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    feats = []
    for i in range(4):
        for j in range(4):
            cell = img[i * h // 4 : (i + 1) * h // 4, j * w // 4 : (j + 1) * w // 4]
            for c in range(3):
                feats.append(np.histogram(cell[..., c], bins=8, range=(0, 256))[0])
    v = np.concatenate(feats).astype(np.float32)
    return v / (np.linalg.norm(v) + 1e-8)


def identity_similarity(frames: np.ndarray, refs: ReferenceImages) -> float:
    ref = color_signature(np.asarray(refs.global_image))
    sims = [float(color_signature(f) @ ref) for f in frames[:: max(1, len(frames) // 6)]]
    return float(np.mean(sims))


def score(frames: np.ndarray, audio: np.ndarray, refs: ReferenceImages) -> float:
    return 0.5 * lip_sync(frames, audio) + 0.5 * identity_similarity(frames, refs)


def default_judge() -> tuple[Judge, str]:
    """The bench's judge when it exists, else this one; with the name of the one chosen."""
    try:
        from model_core.bench.judges import score as bench_score
    except ImportError:
        return score, "model_core.train.judges"
    return bench_score, "model_core.bench.judges"
