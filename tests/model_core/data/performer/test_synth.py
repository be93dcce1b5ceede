import numpy as np

from model_core.data.performer.identity import sample_identity
from model_core.data.performer.synth import SynthPlan, synthesize


def test_parallel_recordings_of_one_identity_share_its_reference_file(tmp_path):
    # Two 4 s recordings of one character render in two processes at once, and both write the
    # character's reference set. A temp file left by an interrupted run is cleared first.
    plan = SynthPlan(
        tmp_path,
        minutes=8 / 60,
        recording_seconds=4,
        recordings_per_identity=2,
        workers=2,
        size=64,
    )
    recordings = plan.recordings()
    assert len(recordings) == 2 and recordings[0][1] == recordings[1][1]
    refs = f"{sample_identity(recordings[0][1], plan.seed).id}.refs"
    ids = tmp_path / "identities"
    ids.mkdir(parents=True)
    (ids / f".{refs}.rec-old.part.npz").write_bytes(b"half-written")

    summary = synthesize(plan)

    assert summary["rendered"] == 2
    assert [p.name for p in ids.iterdir()] == [f"{refs}.npz"]
    with np.load(ids / f"{refs}.npz") as saved:
        assert saved["global"].shape == (64, 64, 3)
    mp4s = sorted(p.name for p in (tmp_path / "raw").glob("*.mp4"))
    assert mp4s == [f"{name}.mp4" for name, _, _ in recordings]
