"""Run the model commands as a user does: a subprocess, its exit status, stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "model_core" / "assets" / "sample"
# `python -m model_core.cli` mounts the same registrars as the `lpm` console script.
LPM = [sys.executable, "-m", "model_core.cli"]


def run_lpm(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [*LPM, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        **kw,
    )
