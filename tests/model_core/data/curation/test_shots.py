import json

import numpy as np

from model_core.data.curation.evaluate import eval_shots
from model_core.data.curation.shots import detect_transitions, extract_shots, split_shots
from model_core.data.curation.source import load_recording


def test_cut_and_dissolve_on_synthetic_frames():
    a = np.full((30, 64, 64, 3), 40, np.uint8)
    b = np.full((30, 64, 64, 3), 200, np.uint8)
    alpha = np.linspace(0, 1, 12)[:, None, None, None]
    dissolve = (b[:12] * alpha + a[:12] * (1 - alpha)).astype(np.uint8)
    frames = np.concatenate([a, b, dissolve[::-1], a, b])  # cut, gradual, hold, cut
    trans = detect_transitions(frames)
    kinds = [(t["type"], t["start"]) for t in trans]
    assert ("cut", 30) in kinds and ("cut", 102) in kinds
    gradual = [t for t in trans if t["type"] == "gradual"]
    assert len(gradual) == 1 and 56 <= gradual[0]["start"] <= 62 and 70 <= gradual[0]["end"] <= 76
    shots = split_shots(len(frames), trans)
    assert shots[0] == (0, 30) and shots[-1] == (102, len(frames))


def test_finds_the_planted_cuts_and_dissolves(synth_dir):
    mp4 = next((synth_dir / "raw").glob("*.mp4"))
    rec = load_recording(mp4)
    meta = json.loads(mp4.with_name(mp4.name.replace(".mp4", ".meta.json")).read_text())
    planted = [s["transition"] for s in meta["shots"][1:]]
    assert "cut" in planted and "dissolve" in planted
    ev = eval_shots(extract_shots(rec), meta)
    assert ev["tp_planted"] == ev["planted"]  # every planted transition found
    assert ev["tp_detected"] >= ev["detected"] - 1  # at most one spurious
