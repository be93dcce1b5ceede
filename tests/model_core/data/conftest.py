"""One small synthesized recording (45 s, seed 6: cuts, dissolves, a too-short shot, heavy
compression and swapped audio tracks planted) and its curation, shared by the data tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_core.data.performer.synth import SynthPlan, synthesize

SEED = 6


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(SynthPlan(out, minutes=0.75, seed=SEED, recording_seconds=45))
    return out


@pytest.fixture(scope="session")
def curated_dir(synth_dir, tmp_path_factory) -> Path:
    from model_core.data.curation.pipeline import curate

    out = tmp_path_factory.mktemp("curated")
    result = curate(str(synth_dir), str(out))
    assert not result.errors
    return out


@pytest.fixture
def curated_copy(curated_dir, tmp_path) -> Path:
    dst = tmp_path / "curated"
    shutil.copytree(curated_dir, dst)
    return dst
