"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from .runner import SAMPLE


@pytest.fixture
def portrait(tmp_path) -> Path:
    """The bundled portrait copied to a plain path, as a user's own image would be."""
    p = tmp_path / "portrait.png"
    Image.open(SAMPLE / "lumi.png").convert("RGB").save(p)
    return p
