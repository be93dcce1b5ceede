"""The metrics, read by the shipped judges, separate real performer footage from broken
footage on a small fixed sample (the same check every bench run reports)."""

import pytest

from model_core.bench.judges import JUDGES_DIR, PROBE_FILE, load_judges
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.bench.validation import validate_metrics

pytestmark = pytest.mark.skipif(
    not (JUDGES_DIR / PROBE_FILE).exists(), reason="no trained judges (lpm bench train-judges)"
)


@pytest.fixture(scope="module")
def samples():
    renderer = ScenarioRenderer()
    return [renderer.render(spec) for spec in scenario_specs(10, 3)[:3]]


@pytest.fixture(scope="module")
def validation(samples):
    return validate_metrics(samples, load_judges())


def test_lip_sync_identity_and_flicker_separate_real_footage(validation):
    sep = validation["separates"]
    assert sep["lip_sync"], validation["table"]
    assert sep["identity"], validation["table"]
    assert sep["flicker"], validation["table"]
    assert sep["mouth_motion"], validation["table"]


def test_mouth_motion_reads_the_footage_as_moving_and_a_frozen_frame_as_still(validation):
    table = validation["table"]
    assert table["ground_truth"]["mouth_motion"] > 0.3
    assert table["static"]["mouth_motion"] < 0.01  # the same frame read again: float noise


def test_ground_truth_lip_sync_is_clearly_positive(validation):
    table = validation["table"]
    assert table["ground_truth"]["lip_sync"] > 0.3
    for broken in ("shuffled", "noise", "static"):
        assert table[broken]["lip_sync"] < table["ground_truth"]["lip_sync"] - 0.2


def test_judge_prefers_real_footage(validation):
    for variant, rate in validation["judge_prefers_ground_truth"].items():
        assert rate >= 0.66, (variant, rate)


def test_dpo_judge_scores_real_footage_above_broken_footage(samples):
    """`score` is what labels DPO pairs: the real clip must beat noise, a frozen frame, the
    same clip against another character's references, and frames out of time."""
    import numpy as np

    from model_core.bench.judges import score

    sample = next(s for s in samples if s.kind == "speaking")
    other = next(s for s in samples if s.spec.identity_index != sample.spec.identity_index)
    frames, speak, refs = sample.frames, sample.speak, sample.refs
    real = score(frames, speak, refs)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, frames.shape, dtype=np.uint8)
    assert real > score(noise, speak, refs) + 0.2
    assert real > score(np.repeat(frames[:1], len(frames), 0), speak, refs) + 0.1
    assert real > score(frames, speak, other.refs) + 0.05
    assert real > score(frames[::-1].copy(), speak, refs) + 0.1


def test_listening_separates_real_dialogue_from_broken_footage():
    """One minute of ground-truth dialogue: the character reacts after its partner speaks
    and never in silence, so real footage scores above shuffled, noise and frozen footage."""
    from model_core.bench.validation import listening_loops, validate_listening

    result = validate_listening(listening_loops(1, 60, seed=0), load_judges(), seed=0)
    rl, nl, rs, ns = result["counts"]["ground_truth"]
    assert rl > 0 and nl > 300 and ns > 24  # reactions seen; enough listening and silence
    assert result["separates"], result["scores"]
    assert result["scores"]["ground_truth"] > 0.01


def test_blurred_footage_keeps_the_colours_and_loses_the_face(samples, validation):
    import numpy as np

    from model_core.bench.validation import corrupt

    frames = samples[0].frames
    soft = corrupt("blurred", samples, 0, seed=0)
    assert soft.shape == frames.shape and soft.dtype == np.uint8
    assert np.abs(soft.astype(float).mean((0, 1, 2)) - frames.mean((0, 1, 2))).max() < 3

    def edges(x):  # second differences across the width: outlines, eyes, a mouth
        return np.abs(np.diff(x.astype(float), n=2, axis=2)).mean()

    assert edges(soft) < 0.2 * edges(frames)
    table = validation["table"]
    assert table["blurred"]["identity"] < table["ground_truth"]["identity"]
