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
def validation():
    renderer = ScenarioRenderer()
    samples = [renderer.render(spec) for spec in scenario_specs(10, 3)[:3]]
    return validate_metrics(samples, load_judges())


def test_lip_sync_identity_and_flicker_separate_real_footage(validation):
    sep = validation["separates"]
    assert sep["lip_sync"], validation["table"]
    assert sep["identity"], validation["table"]
    assert sep["flicker"], validation["table"]


def test_ground_truth_lip_sync_is_clearly_positive(validation):
    table = validation["table"]
    assert table["ground_truth"]["lip_sync"] > 0.3
    for broken in ("shuffled", "noise", "static"):
        assert table[broken]["lip_sync"] < table["ground_truth"]["lip_sync"] - 0.2


def test_judge_prefers_real_footage(validation):
    for variant, rate in validation["judge_prefers_ground_truth"].items():
        assert rate >= 0.66, (variant, rate)
