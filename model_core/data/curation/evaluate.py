"""Each stage's decisions scored against the performer's ground truth, per recording.

The curate command stores the result as `manifest/<recording>/eval.json`; `lpm data report`
adds them up. Definitions:
- shots: a planted cut or dissolve is found when a detected transition lies within
  `tolerance` frames of it; precision over detected transitions, recall over planted ones.
- quality: per detected shot, "defective" when most of its frames carry a visual defect (or it
  lies in a planted too-short shot); precision/recall of the drop decision; subject-box IoU.
- dialogue: 3-class confusion matrix over the frames of shots stage 2 kept that are clean in
  the ground truth; audio-mismatch precision/recall over the shots stage 2 kept.
- captions: the caption's state against the clip's majority ground-truth state.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

VISUAL_DEFECTS = ("blur", "noise", "compression", "offframe", "nosubject", "too_short")
STATES = ("speaking", "listening", "silent")


def _planted_transitions(meta: dict) -> list[tuple[int, int]]:
    out = []
    for sh in meta["shots"]:
        if sh["transition"] == "cut":
            out.append((sh["start"], sh["start"]))
        elif sh["transition"] == "dissolve":
            out.append((sh["start"], sh["start"] + sh["transition_frames"]))
    return out


def eval_shots(manifest: dict, meta: dict, tolerance: int = 2) -> dict:
    planted = _planted_transitions(meta)
    found = [(t["start"], t["end"]) for t in manifest["transitions"]]

    def near(a, b):
        return a[0] - tolerance <= b[1] and b[0] - tolerance <= a[1]

    tp_found = sum(any(near(f, p) for p in planted) for f in found)
    tp_planted = sum(any(near(p, f) for f in found) for p in planted)
    return {
        "detected": len(found),
        "planted": len(planted),
        "tp_detected": tp_found,
        "tp_planted": tp_planted,
    }


def _shot_defect(gt: list[dict], meta: dict, s: int, e: int) -> str | None:
    c = Counter((g["defects"][0] if g["defects"] else None) for g in gt[s:e])
    label, count = c.most_common(1)[0]
    return label if label in VISUAL_DEFECTS else None


def _iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def eval_quality(manifest: dict, gt: list[dict], meta: dict) -> dict:
    tp = fp = fn = tn = 0
    per_defect: dict[str, list[int]] = {d: [0, 0] for d in VISUAL_DEFECTS}  # [dropped, total]
    ious, face_in = [], []
    for entry in manifest["kept"] + manifest["dropped"]:
        truth = _shot_defect(gt, meta, entry["start"], entry["end"])
        dropped = entry["reason"] is not None
        if truth:
            per_defect[truth][1] += 1
            per_defect[truth][0] += int(dropped)
        tp += int(bool(truth) and dropped)
        fp += int(not truth and dropped)
        fn += int(bool(truth) and not dropped)
        tn += int(not truth and not dropped)
        if not dropped and not truth:
            mid = gt[(entry["start"] + entry["end"]) // 2]
            ious.append(_iou(entry["subject_box"], mid["subject_box"]))
            fb, cb = mid["face_box"], entry["crop"]
            face_in.append(
                bool(fb)
                and fb[0] >= cb[0] - 1
                and fb[1] >= cb[1] - 1
                and fb[2] <= cb[2] + 1
                and fb[3] <= cb[3] + 1
            )
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "per_defect": per_defect,
        "subject_iou_sum": float(sum(ious)),
        "subject_iou_n": len(ious),
        "face_in_crop": int(sum(face_in)),
        "face_in_crop_n": len(face_in),
    }


def eval_dialogue(manifest: dict, quality: dict, gt: list[dict]) -> dict:
    confusion = np.zeros((3, 3), np.int64)  # rows: ground truth, cols: predicted
    for shot in manifest["shots"]:
        s = shot["start"]
        for k, ch in enumerate(shot["labels"]):
            g = gt[s + k]
            if g["defects"]:
                continue
            confusion[STATES.index(g["state"]), "SLQ".index(ch)] += 1
    # Mismatch detection over the shots stage 2 kept.
    dropped_mm = {
        (d["start"], d["end"]) for d in manifest["dropped"] if d["reason"] == "audio_mismatch"
    }
    tp = fp = fn = 0
    for shot in quality["kept"]:
        seg = gt[shot["start"] : shot["end"]]
        truth = sum(1 for g in seg if "audio_mismatch" in g["defects"]) > len(seg) / 2
        pred = (shot["start"], shot["end"]) in dropped_mm
        tp += int(truth and pred)
        fp += int(pred and not truth)
        fn += int(truth and not pred)
    return {
        "confusion": confusion.tolist(),
        "mismatch_tp": tp,
        "mismatch_fp": fp,
        "mismatch_fn": fn,
    }


def eval_captions(clips: list[dict], gt: list[dict]) -> dict:
    agree = 0
    for c in clips:
        states = Counter(g["state"] for g in gt[c["start"] : c["end"]])
        agree += int(states.most_common(1)[0][0] == c["state"])
    return {"clips": len(clips), "state_agree": agree}


def f1_scores(confusion) -> dict:
    m = np.asarray(confusion, dtype=np.float64)
    out = {}
    for i, name in enumerate(STATES):
        tp = m[i, i]
        p = tp / m[:, i].sum() if m[:, i].sum() else 0.0
        r = tp / m[i].sum() if m[i].sum() else 0.0
        out[name] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    out["macro_f1"] = float(np.mean([out[s]["f1"] for s in STATES]))
    return out
