"""Checkpoints: a folder with `model.safetensors` and `config.json`, loaded by one function."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model_core.config import LPMConfig

WEIGHTS, CONFIG = "model.safetensors", "config.json"
# The Base teacher's weights may sit in their own file beside the Online model's: a server or
# `lpm perform` reads only WEIGHTS; the bench and training continuation also read this one.
BASE_WEIGHTS = "base.safetensors"


class CheckpointError(ValueError):
    pass


def save_checkpoint(
    model: torch.nn.Module,
    cfg: LPMConfig,
    path: str | Path,
    *,
    version: str,
    dtype: torch.dtype = torch.float32,
    extra: dict | None = None,
    split_base: bool = False,
) -> Path:
    """Write weights (optionally as fp16/bf16 to keep shipped files small) and config; with
    `split_base`, the Base teacher's weights go to their own file (BASE_WEIGHTS)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    base = {k: v for k, v in state.items() if k.startswith("base.")} if split_base else {}
    if base:
        state = {k: v for k, v in state.items() if k not in base}
        save_file(base, str(path / BASE_WEIGHTS), metadata={"version": version})
    elif (path / BASE_WEIGHTS).exists():
        (path / BASE_WEIGHTS).unlink()  # a stale teacher must not load with new weights
    save_file(state, str(path / WEIGHTS), metadata={"version": version})
    meta = {"version": version, "config": cfg.to_dict(), "dtype": str(dtype).split(".")[-1]}
    (path / CONFIG).write_text(json.dumps(meta | (extra or {}), indent=2))
    return path


def read_checkpoint(
    path: str | Path, with_base: bool = True
) -> tuple[LPMConfig, dict[str, torch.Tensor], dict]:
    """Config, float32 weights and metadata; the split Base file is read only `with_base`."""
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path}: not a checkpoint folder (needs {WEIGHTS} and {CONFIG})")
    try:
        meta = json.loads((path / CONFIG).read_text())
        cfg = LPMConfig.from_dict(meta["config"])
        state = {k: v.float() for k, v in load_file(str(path / WEIGHTS)).items()}
        if with_base and (path / BASE_WEIGHTS).is_file():
            state |= {k: v.float() for k, v in load_file(str(path / BASE_WEIGHTS)).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    return cfg, state, meta
