"""One small synthesized recording (45 s, seed 6: cuts, dissolves, a too-short shot, heavy
compression and swapped audio tracks planted) and its curation, shared by the data tests."""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from model_core.data.performer.synth import SynthPlan, synthesize

SEED = 6


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    # In a fresh process: espeak-ng's output for a line depends on what the library said
    # before in the same process, so synthesising here would make the fixture depend on which
    # tests ran first (and the swapped-track and F1 checks with it).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        pool.submit(
            synthesize, SynthPlan(out, minutes=0.75, seed=SEED, recording_seconds=45)
        ).result()
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
