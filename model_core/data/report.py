"""`lpm data report DIR`: what curation kept, how well each stage did, and how fast.

Reads `DIR/manifest/*/done.json` and `eval.json` (written by `lpm data curate`); prints a text
report, and optionally writes the same figures as JSON and a PNG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model_core.data.curation.evaluate import STATES, VISUAL_DEFECTS, f1_scores
from model_core.data.curation.pipeline import STAGES
from model_core.data.storage import Store


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def build_report(store: Store) -> dict:
    done, evals, errors = [], [], {}
    for key in store.list("manifest/"):
        if key.endswith("/done.json"):
            done.append(json.loads(store.get(key)))
            ev_key = key[: -len("done.json")] + "eval.json"
            if store.exists(ev_key):
                evals.append(json.loads(store.get(ev_key)))
        elif key.endswith("/error.json"):
            errors[key.split("/")[1]] = json.loads(store.get(key))["error"]
    if not done and not errors:
        raise ValueError("no curation manifests (run `lpm data curate` first)")
    raw = sum(d["frames_raw"] for d in done)
    kept = {s: sum(d["frames_kept"][s] for d in done) for s in STAGES}
    fps = done[0]["fps"] if done else 24.0
    retention = {"raw_frames": raw, "raw_seconds": round(raw / fps, 2)}
    prev = raw
    for s in STAGES:
        retention[s] = {
            "frames": kept[s],
            "of_raw": _ratio(kept[s], raw),
            "of_previous": _ratio(kept[s], prev),
        }
        prev = kept[s]
    stage_seconds = {s: round(sum(d["seconds"][s] for d in done), 3) for s in STAGES}
    total_s = sum(d["wall_s"] for d in done)
    throughput = {
        "wall_s": round(total_s, 3),
        "raw_seconds_per_second": _ratio(raw / fps, total_s),
        "raw_hours_per_hour": _ratio(raw / fps, total_s),
        "stage_seconds": stage_seconds,
        "stage_raw_seconds_per_second": {s: _ratio(raw / fps, v) for s, v in stage_seconds.items()},
    }
    report: dict = {
        "recordings": len(done),
        "errors": errors,
        "clips": sum(d["clips"] for d in done),
        "retention": _ratio(kept["captions"], raw),
        "retention_by_stage": retention,
        "throughput": throughput,
    }
    evals = [e for e in evals if e]
    if evals:
        sh = {k: sum(e["shots"][k] for e in evals) for k in evals[0]["shots"]}
        q = {k: sum(e["quality"][k] for e in evals) for k in ("tp", "fp", "fn", "tn")}
        per_defect = {
            d: [sum(e["quality"]["per_defect"][d][i] for e in evals) for i in (0, 1)]
            for d in VISUAL_DEFECTS
        }
        iou_n = sum(e["quality"]["subject_iou_n"] for e in evals)
        face_n = sum(e["quality"]["face_in_crop_n"] for e in evals)
        dl = {
            k: sum(e["dialogue"][k] for e in evals)
            for k in ("mismatch_tp", "mismatch_fp", "mismatch_fn")
        }
        confusion = np.sum([np.array(e["dialogue"]["confusion"]) for e in evals], axis=0)
        f1 = f1_scores(confusion)
        cap = {k: sum(e["captions"][k] for e in evals) for k in ("clips", "state_agree")}
        report["stages"] = {
            "shots": {
                "precision": _ratio(sh["tp_detected"], sh["detected"]),
                "recall": _ratio(sh["tp_planted"], sh["planted"]),
                "planted": sh["planted"],
                "detected": sh["detected"],
            },
            "quality": {
                "precision": _ratio(q["tp"], q["tp"] + q["fp"]),
                "recall": _ratio(q["tp"], q["tp"] + q["fn"]),
                **q,
                "recall_by_defect": {d: _ratio(v[0], v[1]) for d, v in per_defect.items()},
                "defective_shots_by_defect": {d: v[1] for d, v in per_defect.items()},
                "subject_box_iou": _ratio(
                    sum(e["quality"]["subject_iou_sum"] for e in evals), iou_n
                ),
                "face_inside_crop": _ratio(
                    sum(e["quality"]["face_in_crop"] for e in evals), face_n
                ),
            },
            "dialogue": {
                "precision": round(float(np.mean([f1[s]["precision"] for s in STATES])), 4),
                "recall": round(float(np.mean([f1[s]["recall"] for s in STATES])), 4),
                "per_state": {s: {k: round(v, 4) for k, v in f1[s].items()} for s in STATES},
                "audio_mismatch_precision": _ratio(
                    dl["mismatch_tp"], dl["mismatch_tp"] + dl["mismatch_fp"]
                ),
                "audio_mismatch_recall": _ratio(
                    dl["mismatch_tp"], dl["mismatch_tp"] + dl["mismatch_fn"]
                ),
                **dl,
            },
            "captions": {
                "precision": _ratio(cap["state_agree"], cap["clips"]),
                "recall": _ratio(cap["state_agree"], cap["clips"]),
                **cap,
            },
        }
        report["dialogue_state_macro_f1"] = round(f1["macro_f1"], 4)
        report["confusion_matrix"] = {
            "labels": list(STATES),
            "rows": "ground truth",
            "cols": "predicted",
            "matrix": confusion.tolist(),
        }
    else:
        report["dialogue_state_macro_f1"] = None
    return report


def format_report(r: dict) -> str:
    lines = [f"recordings: {r['recordings']}  clips: {r['clips']}  errors: {len(r['errors'])}"]
    rb = r["retention_by_stage"]
    lines.append(f"raw: {rb['raw_frames']} frames ({rb['raw_seconds']} s)")
    lines.append("retention per stage (frames kept, of raw, of previous stage):")
    for s in STAGES:
        lines.append(
            f"  {s:9s} {rb[s]['frames']:8d}  {_pct(rb[s]['of_raw'])}  {_pct(rb[s]['of_previous'])}"
        )
    lines.append(f"overall retention: {_pct(r['retention'])}")
    if r.get("stages"):
        lines.append("per-stage precision / recall against ground truth:")
        for s in STAGES:
            st = r["stages"][s]
            lines.append(f"  {s:9s} P={_num(st['precision'])}  R={_num(st['recall'])}")
        q = r["stages"]["quality"]
        lines.append(
            "  quality recall by defect: "
            + ", ".join(
                f"{d}={_num(v)}({q['defective_shots_by_defect'][d]})"
                for d, v in q["recall_by_defect"].items()
            )
        )
        lines.append(
            f"  subject box IoU {_num(q['subject_box_iou'])}, face inside crop {_pct(q['face_inside_crop'])}"
        )
        d = r["stages"]["dialogue"]
        lines.append(
            f"  audio mismatch P={_num(d['audio_mismatch_precision'])} R={_num(d['audio_mismatch_recall'])}"
        )
        lines.append(f"dialogue state macro F1: {r['dialogue_state_macro_f1']:.4f}")
        lines.append("confusion (rows ground truth, cols predicted):")
        lines.append("  " + " " * 10 + "".join(f"{s:>11s}" for s in STATES))
        for s, row in zip(STATES, r["confusion_matrix"]["matrix"]):
            lines.append(f"  {s:10s}" + "".join(f"{v:11d}" for v in row))
        for s in STATES:
            ps = d["per_state"][s]
            lines.append(
                f"  {s:10s} P={ps['precision']:.3f} R={ps['recall']:.3f} F1={ps['f1']:.3f}"
            )
    t = r["throughput"]
    lines.append(
        f"throughput: {t['raw_hours_per_hour']} h of raw per hour (one process, {t['wall_s']} s wall)"
    )
    lines.append(
        "  per stage (raw seconds per second): "
        + ", ".join(f"{s}={v}" for s, v in t["stage_raw_seconds_per_second"].items())
    )
    for name, err in r["errors"].items():
        lines.append(f"error: {name}: {err}")
    return "\n".join(lines)


def _pct(v) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_png(r: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    rb = r["retention_by_stage"]
    vals = [1.0] + [rb[s]["of_raw"] or 0 for s in STAGES]
    axes[0].bar(["raw", *STAGES], vals, color="#4a7")
    axes[0].set_title(f"retention (overall {_pct(r['retention']).strip()})")
    axes[0].set_ylim(0, 1.05)
    if r.get("stages"):
        p = [r["stages"][s]["precision"] or 0 for s in STAGES]
        rc = [r["stages"][s]["recall"] or 0 for s in STAGES]
        x = np.arange(len(STAGES))
        axes[1].bar(x - 0.2, p, 0.4, label="precision")
        axes[1].bar(x + 0.2, rc, 0.4, label="recall")
        axes[1].set_xticks(x, STAGES)
        axes[1].set_ylim(0, 1.05)
        axes[1].legend(loc="lower left")
        axes[1].set_title("per-stage precision / recall")
        m = np.array(r["confusion_matrix"]["matrix"])
        axes[2].imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(3):
            for j in range(3):
                axes[2].text(j, i, str(m[i, j]), ha="center", va="center")
        axes[2].set_xticks(range(3), STATES)
        axes[2].set_yticks(range(3), STATES)
        axes[2].set_xlabel("predicted")
        axes[2].set_ylabel("ground truth")
        axes[2].set_title(f"dialogue state, macro F1 {r['dialogue_state_macro_f1']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
