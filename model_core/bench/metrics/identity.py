"""Identity: appearance-embedding similarity of each generated frame to the reference set.

Each frame is compared with every reference (global, body views, faces) and keeps its best
match, so a turned head is judged against the body view it should resemble. Frames where the
ground-truth head is turned are also scored apart (`turned`).
"""

from __future__ import annotations

import numpy as np

TURNED_DEG = 30.0


def frame_similarity(frame_emb: np.ndarray, ref_emb: np.ndarray) -> np.ndarray:
    """(T, D) frame and (R, D) reference unit embeddings -> (T,) best cosine similarity."""
    return (frame_emb @ ref_emb.T).max(axis=1)


def identity_scores(sim: np.ndarray, head_yaw: np.ndarray) -> dict[str, float | None]:
    turned = np.abs(head_yaw) >= TURNED_DEG
    return {
        "identity": float(sim.mean()),
        "identity_turned": float(sim[turned].mean()) if turned.any() else None,
    }
