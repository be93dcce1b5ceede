import json

import av
import numpy as np

from model_core.data.performer.identity import sample_identity
from model_core.data.performer.recording import render_recording
from model_core.data.performer.speech import EspeakSynth


def test_recording_files_and_layout(synth_dir):
    raw = sorted((synth_dir / "raw").glob("*.mp4"))
    assert len(raw) == 1
    mp4 = raw[0]
    with av.open(str(mp4)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 2
        assert c.streams.video[0].width == 128
        assert all(s.rate == 16000 for s in c.streams.audio)
    meta = json.loads(mp4.with_name(mp4.name.replace(".mp4", ".meta.json")).read_text())
    gt = mp4.with_name(mp4.name.replace(".mp4", ".gt.jsonl")).read_text().splitlines()
    assert len(gt) == meta["frames"] == 45 * 24
    first = json.loads(gt[0])
    for key in (
        "shot",
        "defects",
        "state",
        "mouth_open",
        "expression",
        "head_pose",
        "gesture",
        "reaction",
        "subject_box",
        "face_box",
        "transition",
    ):
        assert key in first
    assert meta["audio_tracks"] == ["character", "partner"]
    states = {json.loads(line)["state"] for line in gt}
    assert states == {"speaking", "listening", "silent"}
    assert (synth_dir / "identities" / f"{meta['identity']['id']}.refs.npz").exists()
    summary = json.loads((synth_dir / "synth.json").read_text())
    assert summary["frames"] == 45 * 24 and summary["fps_per_process"] > 0


def test_same_seed_same_ground_truth_bytes(tmp_path):
    synth = EspeakSynth()
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        render_recording(
            "r",
            tmp_path / d,
            sample_identity(4),
            sample_identity(99).voice,
            6.0,
            seed=11,
            synth=synth,
        )
    assert (tmp_path / "a/r.gt.jsonl").read_bytes() == (tmp_path / "b/r.gt.jsonl").read_bytes()
    assert (tmp_path / "a/r.meta.json").read_bytes() == (tmp_path / "b/r.meta.json").read_bytes()


def test_reactions_follow_partner_utterances(synth_dir):
    meta = json.loads(next((synth_dir / "raw").glob("*.meta.json")).read_text())
    turns = meta["turns"]
    nods = [e for e in meta["events"] if e["kind"] == "nod"]
    for nod in nods:
        cause = turns[nod["cause"]]
        assert cause["speaker"] == "partner"
        # A nod comes after the phrase it answers starts, with a human delay.
        assert nod["start"] / 24 > cause["voiced"][0] + 0.2
    assert np.all([e["end"] > e["start"] for e in meta["events"]])
