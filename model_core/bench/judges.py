"""The bench's two small judge networks, trained on performer ground truth only (never on the
generator's training objective, so the judge is not the student):

- `FaceProbe`: a frame -> mouth opening, head pitch, brow raise and head yaw regressor. Lip sync
  reads its mouth opening; listening reads nods (pitch) and brow raises from it.
- `IdentityEmbedder`: a frame -> unit-norm appearance embedding, trained contrastively so
  that renders of one character (any pose, camera, background) sit together.

Both are saved as safetensors in `model_core/assets/judges/` by `lpm bench train-judges`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

JUDGES_DIR = Path(__file__).resolve().parents[1] / "assets" / "judges"
PROBE_FILE = "face_probe.safetensors"
EMBEDDER_FILE = "identity_embedder.safetensors"
# FaceProbe outputs, in order, and the scale each target is divided by for training.
PROBE_TARGETS = ("mouth_open", "pitch", "brow", "yaw")
PROBE_SCALES = (1.0, 10.0, 1.0, 45.0)


def _stem(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.SiLU())


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1),
        nn.GroupNorm(4, cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.SiLU(),
    )


def frames_to_input(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, size, size) in [-1, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x


def probe_crop(frames: np.ndarray) -> np.ndarray:
    """The head region of a head-and-shoulders frame (top 3/4, central 3/4): the probe never
    spends compute on the shoulders and the background."""
    h, w = frames.shape[1:3]
    return frames[:, : round(0.75 * h), round(0.125 * w) : round(0.875 * w)]


class FaceProbe(nn.Module):
    """The head region of a frame, at 96 px -> (mouth_open, pitch/10, brow, yaw/45). Keeps
    near-full resolution on the way in because an open mouth is a few pixels tall."""

    input_size = 96

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _stem(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w)
        )  # 96 -> 6
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * w * 36, 128), nn.SiLU(), nn.Linear(128, len(PROBE_TARGETS))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def inputs(self, frames: np.ndarray) -> torch.Tensor:
        return frames_to_input(probe_crop(frames), self.input_size)

    @torch.no_grad()
    def predict(self, frames: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
        """uint8 (T, H, W, 3) -> per-frame targets in their natural units (degrees for angles)."""
        outs = []
        for i in range(0, len(frames), batch):
            outs.append(self(self.inputs(frames[i : i + batch])))
        y = torch.cat(outs).numpy() * np.float32(PROBE_SCALES)
        return {k: y[:, j] for j, k in enumerate(PROBE_TARGETS)}


class IdentityEmbedder(nn.Module):
    """A frame at `input_size` px -> unit-norm 64-d appearance embedding. The features are
    pooled to 4 x 4 before the head, so any input size shares the same weights' shapes (at
    64 px the pooling does nothing: the first judges were trained so)."""

    def __init__(self, width: int = 32, dim: int = 64, input_size: int = 64):
        super().__init__()
        w = width
        self.input_size = input_size
        self.features = nn.Sequential(
            _stem(3, w),
            _block(w, 2 * w),
            _block(2 * w, 4 * w),
            _block(4 * w, 4 * w),  # input / 16
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.SiLU(), nn.Linear(256, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=-1)

    @torch.no_grad()
    def embed(self, frames: np.ndarray, batch: int = 128) -> np.ndarray:
        outs = []
        for i in range(0, len(frames), batch):
            outs.append(self(frames_to_input(frames[i : i + batch], self.input_size)))
        return torch.cat(outs).numpy()


@dataclass
class Judges:
    probe: FaceProbe
    embedder: IdentityEmbedder
    info: dict  # how they were trained and validated (from the files' metadata)
    trained: bool = True


def save_judges(judges: Judges, folder: Path = JUDGES_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"info": json.dumps(judges.info)}
    out = []
    for name, model in ((PROBE_FILE, judges.probe), (EMBEDDER_FILE, judges.embedder)):
        state = {
            k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
        }
        tmp = folder / f".{name}.part"
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(folder / name)
        out.append(folder / name)
    return out


def load_judges(folder: Path | None = None, allow_untrained: bool = False) -> Judges:
    """The trained judges; with `allow_untrained`, random ones when none are saved (tests)."""
    folder = Path(folder) if folder else JUDGES_DIR
    paths = [folder / PROBE_FILE, folder / EMBEDDER_FILE]
    if not all(p.exists() for p in paths):
        if not allow_untrained:
            raise FileNotFoundError(
                f"no trained judges in {folder}; run `lpm bench train-judges` first"
            )
        torch.manual_seed(0)
        return Judges(FaceProbe().eval(), IdentityEmbedder().eval(), {}, trained=False)
    from safetensors import safe_open

    with safe_open(str(paths[1]), "pt") as f:
        info = json.loads((f.metadata() or {}).get("info", "{}"))
    # The first judges' embedder read 64 px and did not record it.
    size = int(info.get("embedder", {}).get("input_size", 64))
    probe, embedder = FaceProbe(), IdentityEmbedder(input_size=size)
    for model, path in zip((probe, embedder), paths):
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return Judges(probe.eval(), embedder.eval(), info)


_LOADED: dict[str, Judges] = {}


def _default_judges() -> Judges:
    if "default" not in _LOADED:
        _LOADED["default"] = load_judges()
    return _LOADED["default"]


def score(frames: np.ndarray, audio: np.ndarray, refs, judges: Judges | None = None) -> float:
    """The automatic preference judge DPO labels pairs with (higher is better): half lip sync
    (the probe's mouth opening against the speaking track's per-frame RMS, Pearson) and half
    identity (each frame's best embedding similarity to the reference set), the bench's own
    lip-sync and identity metrics on one clip.

    frames: uint8 (T, H, W, 3); audio: the speaking track as 16 kHz PCM spanning those T
    frames at 24 fps; refs: the identity's `ReferenceImages`."""
    from model_core.bench.metrics.identity import frame_similarity
    from model_core.bench.metrics.lip_sync import _smooth, pearson
    from model_core.bench.scenarios import frame_rms

    j = judges or _default_judges()
    frames = np.asarray(frames)
    energy = frame_rms(np.asarray(audio, np.float32), len(frames))
    mouth = j.probe.predict(frames)["mouth_open"].astype(np.float64)
    lip = pearson(_smooth(mouth), _smooth(energy.astype(np.float64)))
    images = [refs.global_image, *refs.body.values(), *refs.face.values()]
    ref_emb = np.concatenate([j.embedder.embed(np.asarray(i)[None]) for i in images])
    ident = float(frame_similarity(j.embedder.embed(frames), ref_emb).mean())
    return 0.5 * lip + 0.5 * ident
