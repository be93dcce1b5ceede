"""The shipped `tiny` checkpoint: it loads the way serving loads it, it is small, and its
LPM-Bench-mini figures are reproduced by `lpm bench quality --quick` within tolerance.

The figures it is checked against were written by the command in the README (Measured)
(`lpm bench quality --quick --threads 2 --json docs/bench/quality_quick.json`) when the
checkpoint was shipped. A fresh run uses the same seeds, so the only differences allowed are
floating-point ones (thread count, library versions); a changed checkpoint, judge or bench
shows up as a mismatch. The command runs in its own process, as the README runs it: espeak-ng
carries state from one utterance to the next, so speech synthesised earlier in a test
process would change the bench's audio (and ground truth's own lip sync by about 0.05).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.checkpoint import BASE_WEIGHTS, WEIGHTS
from model_core.pipeline import LPMPipeline

RECORDED = Path(__file__).resolve().parents[3] / "docs" / "bench" / "quality_quick.json"
METRIC_TOL = 0.05  # absolute, on correlations / cosine similarities / rates in [-1, 1]
FLICKER_TOL = 0.01
WIN_TOL = 0.15  # a quick bench has ~10 pairs per comparison: one flipped pair is 0.1

pytestmark = pytest.mark.skipif(
    not (SHIPPED_CHECKPOINT / WEIGHTS).exists(), reason="no shipped checkpoint"
)


def test_shipped_checkpoint_is_small_and_serves_without_the_teacher():
    assert (SHIPPED_CHECKPOINT / WEIGHTS).stat().st_size < 30 * 2**20
    pipe = LPMPipeline.load(SHIPPED_CHECKPOINT, with_base=False)
    assert pipe.model.base is None and "trained" in pipe.version
    assert (SHIPPED_CHECKPOINT / BASE_WEIGHTS).exists()  # the bench's Base system needs it


def _close(a, b, tol):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol


def test_quick_bench_reproduces_the_recorded_figures(tmp_path):
    recorded = json.loads(RECORDED.read_text())
    assert recorded["quick"] and recorded["model"]["source"] == "shipped checkpoint"
    threads = str(recorded["settings"]["threads"])
    out = tmp_path / "quick.json"
    cmd = [sys.executable, "-m", "model_core.cli", "bench", "quality", "--quick"]
    subprocess.run([*cmd, "--threads", threads, "--json", str(out)], check=True, timeout=900)
    result = json.loads(out.read_text())
    assert result["model"]["version"] == recorded["model"]["version"]
    mismatches = []
    for name, want in recorded["systems"].items():
        got = result["systems"][name]
        for metric in ("lip_sync", "identity", "listening", "drift"):
            if not _close(got[metric], want[metric], METRIC_TOL):
                mismatches.append((name, metric, got[metric], want[metric]))
        if not _close(got["flicker"], want["flicker"], FLICKER_TOL):
            mismatches.append((name, "flicker", got["flicker"], want["flicker"]))
    for key, want in recorded["win_rates"].items():
        if not _close(result["win_rates"][key], want, WIN_TOL):
            mismatches.append(("win_rate", key, result["win_rates"][key], want))
    assert not mismatches, mismatches
