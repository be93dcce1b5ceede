"""Training checkpoints in a folder or an S3 prefix (the data package's `open_store`).

Layout under the store:
- `step-00000120/model.safetensors`, `config.json`: the LPM model, loadable by
  `LPMPipeline.load` (after fetching, for S3);
- `step-00000120/trainer.pt`: optimizer, RNG and data-sampler state, objective extras
  (critic, frozen reference), EMA: what makes a resumed run continue bit for bit;
- `latest`: the name of the newest complete checkpoint, written last, so a crash mid-write
  leaves the previous checkpoint in charge;
- `final/`: the stage's result (model + `stage.json` with its summary), the next stage's init.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from model_core.checkpoint import CONFIG, WEIGHTS, read_checkpoint, save_checkpoint
from model_core.config import LPMConfig
from model_core.data.storage import open_store

TRAINER = "trainer.pt"
LATEST = "latest"
FINAL = "final"


class TrainingCheckpoints:
    def __init__(self, url: str | Path):
        self.url = str(url)
        self.store = open_store(self.url, create=True)

    def _put_model(
        self,
        prefix: str,
        model,
        cfg: LPMConfig,
        version: str,
        dtype: torch.dtype = torch.float32,
        extra: dict | None = None,
    ) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(model, cfg, tmp, version=version, dtype=dtype, extra=extra)
            for name in (WEIGHTS, CONFIG):
                self.store.put(f"{prefix}/{name}", (Path(tmp) / name).read_bytes())

    def save(
        self, step: int, model, cfg: LPMConfig, version: str, trainer: dict[str, Any], keep: int = 2
    ) -> str:
        name = f"step-{step:08d}"
        self._put_model(name, model, cfg, version)
        buf = io.BytesIO()
        torch.save(trainer, buf)
        self.store.put(f"{name}/{TRAINER}", buf.getvalue())
        self.store.put(LATEST, name.encode())
        self.prune(keep)
        return name

    def latest(self) -> str | None:
        if not self.store.exists(LATEST):
            return None
        return self.store.get(LATEST).decode().strip() or None

    def load(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Model state and trainer state of checkpoint `name`."""
        with tempfile.TemporaryDirectory() as tmp:
            for f in (WEIGHTS, CONFIG):
                (Path(tmp) / f).write_bytes(self.store.get(f"{name}/{f}"))
            _, state, _ = read_checkpoint(tmp)
        trainer = torch.load(io.BytesIO(self.store.get(f"{name}/{TRAINER}")), weights_only=False)
        return state, trainer

    def prune(self, keep: int) -> None:
        steps = sorted({k.split("/")[0] for k in self.store.list() if k.startswith("step-")})
        current = self.latest()
        for name in steps[:-keep] if keep > 0 else []:
            if name == current:
                continue
            for key in list(self.store.list(name + "/")):
                self.store.delete(key)
            local = self.store.local_path(name)
            if local is not None and local.is_dir():
                shutil.rmtree(local, ignore_errors=True)

    def save_final(self, model, cfg: LPMConfig, version: str, summary: dict) -> str:
        self._put_model(FINAL, model, cfg, version, extra={"training": summary})
        self.store.put(f"{FINAL}/stage.json", json.dumps(summary, indent=1).encode())
        return self.location(FINAL)

    def put_file(self, key: str, path: Path) -> None:
        self.store.put(key, Path(path).read_bytes())

    def location(self, name: str) -> str:
        local = self.store.local_path(name)
        return str(local) if local is not None else f"{self.url.rstrip('/')}/{name}"


def fetch_checkpoint(url: str | Path, into: str | Path | None = None) -> Path:
    """A checkpoint folder on local disk: the folder itself, or a copy of an S3 prefix."""
    text = str(url)
    if not text.startswith("s3://"):
        return Path(text)
    parent, _, name = text.rstrip("/").rpartition("/")
    store = open_store(parent)
    dest = Path(into or tempfile.mkdtemp(prefix="lpm-ckpt-"))
    dest.mkdir(parents=True, exist_ok=True)
    for f in (WEIGHTS, CONFIG):
        (dest / f).write_bytes(store.get(f"{name}/{f}"))
    return dest
