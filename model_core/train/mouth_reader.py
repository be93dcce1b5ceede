"""A mouth reader for training: how open is the mouth in a frame? A loss, not a judge.

The mouth is a few pixels of a 128x128 frame, and a pixel loss hardly tells a mouth drawn
half open in every frame from one that opens and closes with the syllables. On 64 training
windows, a ridge regression from a frame's audio features to its mouth band's pixels
(resampled to 8x16, grey) explained 0.5% of their variance within a clip, although one
from the same features to the ground-truth opening reaches r 0.79 (docs/training.md). `LPMMouthReader` reads the opening directly: a small CNN on
the mouth band of the face box, resampled to a fixed patch, regressed onto the performer's
ground-truth `mouth_open`. Frozen, it turns "draw the mouth as open as the footage's" into a
differentiable loss for the `vae-decoder` stage (option `mouth_read`).

It is trained here, on the training split only, with its own architecture and seed, and it
is not the bench's FaceProbe (`model_core/bench/judges.py`), which scores lip sync: the
judge is never the student's loss. Recoloured and blurred copies make it read the opening
of a blurry decode in any palette, as the decoder's frames are.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from model_core.progress import progress_bar
from model_core.train.objectives.vae import recolour

PATCH = (16, 32)  # (height, width) the mouth band is resampled to


def crop_mouths(frames: Tensor, boxes: Tensor, patch: tuple[int, int] = PATCH) -> Tensor:
    """frames (N, 3, H, W) and mouth regions (N, 4) in pixels (x0, y0, x1, y1) -> patches
    (N, 3, *patch), bilinear and differentiable in the frames."""
    n, _, h, w = frames.shape
    ph, pw = patch
    x0, y0, x1, y1 = boxes.float().unbind(-1)
    # Pixel centres of the patch inside the box, in grid_sample's [-1, 1] coordinates.
    u = (torch.arange(pw, dtype=torch.float32) + 0.5) / pw
    v = (torch.arange(ph, dtype=torch.float32) + 0.5) / ph
    xs = x0[:, None] + (x1 - x0)[:, None] * u[None]  # (N, pw)
    ys = y0[:, None] + (y1 - y0)[:, None] * v[None]  # (N, ph)
    gx = (xs / w) * 2 - 1
    gy = (ys / h) * 2 - 1
    grid = torch.stack(
        [gx[:, None, :].expand(n, ph, pw), gy[:, :, None].expand(n, ph, pw)], dim=-1
    ).to(frames.dtype)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


class LPMMouthReader(nn.Module):
    """(N, 3, H, W) frames in [-1, 1] + (N, 4) mouth regions -> (N,) mouth opening."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.width = width
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (PATCH[0] // 4) * (PATCH[1] // 4), 64),
            nn.SiLU(),
            nn.Linear(64, 1),
        )

    def forward(self, frames: Tensor, boxes: Tensor) -> Tensor:
        return self.net(crop_mouths(frames, boxes)).squeeze(-1)

    def save(self, path: str | Path) -> None:
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path), metadata={"width": str(self.width)})

    @classmethod
    def load(cls, path: str | Path) -> LPMMouthReader:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            width = int((f.metadata() or {}).get("width", 24))
        reader = cls(width)
        reader.load_state_dict(load_file(str(path)))
        return reader.eval().requires_grad_(False)


def _frames_to_read(frames: Tensor, boxes: Tensor, known: Tensor | None = None):
    """Clips (B, 3, T, H, W) and pixel mouth regions (B, T, 4) -> the frames (N, 3, H, W) and
    boxes (N, 4) whose region is known (and `known`, a (B, T) mask, where given), and the
    (B * T,) mask that picked them."""
    b, c, t, h, w = frames.shape
    flat = frames.transpose(1, 2).reshape(b * t, c, h, w)
    boxes = boxes.reshape(b * t, 4)
    ok = ~boxes.isnan().any(dim=1)
    if known is not None:
        ok &= known.reshape(b * t)
    return flat[ok], boxes[ok], ok


def read_openings(reader: LPMMouthReader, frames: Tensor, boxes: Tensor) -> Tensor:
    """The reader's opening of each frame of clips (B, 3, T, H, W) given its pixel mouth
    region (B, T, 4) -> (B, T), NaN where the region is unknown."""
    picked, picked_boxes, ok = _frames_to_read(frames, boxes)
    out = frames.new_full(ok.shape, float("nan"))
    if bool(ok.any()):
        out[ok] = reader(picked, picked_boxes)
    return out.reshape(boxes.shape[:2])


def reader_error(
    reader: LPMMouthReader,
    frames: Tensor,
    boxes: Tensor,
    target: Tensor,
    jitter: float = 0.0,
    soften: float = 0.0,
) -> Tensor:
    """A frozen reader's squared error on decoded frames (B, 3, T, H, W) given each frame's
    pixel mouth region (B, T, 4) and ground-truth opening (B, T), over the frames that have
    both (0 with the graph kept when none has). `jitter` and `soften` read each frame through
    `perturb_reading` first."""
    picked, picked_boxes, ok = _frames_to_read(frames, boxes, ~target.isnan())
    if not bool(ok.any()):
        return frames.sum() * 0.0
    if jitter > 0 or soften > 0:
        picked, picked_boxes = perturb_reading(picked, picked_boxes, jitter, soften)
    return F.mse_loss(reader(picked, picked_boxes), target.reshape(-1)[ok].to(frames.dtype))


def perturb_reading(
    frames: Tensor, boxes: Tensor, jitter: float, soften: float
) -> tuple[Tensor, Tensor]:
    """Frames (N, 3, H, W) and mouth regions (N, 4) as a differently placed, sharper or softer
    look would read them: each region moved by up to `jitter` pixels each way and scaled by up
    to `jitter`/16 about its centre, and each frame softened (`_soften`) with probability
    `soften` (the global RNG draws both).

    A student trained against one frozen reader can learn the reader's blind spots instead of
    a mouth: textures and stripes placed where its crop samples that it reads as open. Reading
    through random placements and blur (an expectation over transformations) leaves only what
    survives them, a shape the size of a mouth, to gain from."""
    n = frames.shape[0]
    if jitter > 0:
        shift = (torch.rand(n, 2) * 2 - 1) * jitter
        scale = 1 + (torch.rand(n, 1) * 2 - 1) * (jitter / 16)
        b = boxes.float()
        centre = (b[:, :2] + b[:, 2:]) / 2 + shift
        half = (b[:, 2:] - b[:, :2]) / 2 * scale
        boxes = torch.cat([centre - half, centre + half], dim=1).to(boxes.dtype)
    if soften > 0:
        blur = (torch.rand(n) < soften).to(frames.dtype).view(n, 1, 1, 1)
        frames = blur * _soften(frames) + (1 - blur) * frames
    return frames, boxes


def _soften(x: Tensor) -> Tensor:
    """Frames (N, 3, H, W) at half resolution and back: about as soft as a tiny-VAE decode."""
    return F.interpolate(F.avg_pool2d(x, 2), x.shape[-2:], mode="bilinear", align_corners=False)


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Every frame recoloured as the VAE stages recolour clips, half of them softened."""
    x = recolour(x[:, :, None], 1.0)[:, :, 0]
    blur = torch.rand(x.shape[0], generator=gen) < 0.5
    if bool(blur.any()):
        x = x.clone()
        x[blur] = _soften(x[blur])
    return x


def collect_frames(source, max_frames: int = 8000, seed: int = 0) -> dict[str, Tensor]:
    """Frames with a face box and a mouth opening from a clip source's 1-second windows:
    {"frames" (N, H, W, 3) uint8, "boxes" (N, 4), "opening" (N,), "identity" (N,) int}."""
    from model_core.train.data import mouth_boxes

    wins = source.windows(1)
    if not wins:
        raise ValueError("no usable 1-second windows in the data")
    order = np.random.default_rng(seed).permutation(len(wins))
    frames, boxes, opening, ident, names = [], [], [], [], {}
    total = 0
    for i in order:
        clip = source.clip(wins[i], 1)
        if clip.face_boxes is None or clip.mouth_open is None:
            raise ValueError("the mouth reader needs face boxes and mouth openings in the data")
        mb = mouth_boxes(clip.face_boxes, 1, 1)
        ok = ~np.isnan(mb).any(1) & ~np.isnan(clip.mouth_open)
        frames.append(clip.frames[ok])
        boxes.append(mb[ok])
        opening.append(clip.mouth_open[ok])
        ident.append(np.full(int(ok.sum()), names.setdefault(clip.identity, len(names))))
        total += int(ok.sum())
        if total >= max_frames:
            break
    return {
        "frames": torch.from_numpy(np.concatenate(frames)),
        "boxes": torch.from_numpy(np.concatenate(boxes)),
        "opening": torch.from_numpy(np.concatenate(opening)),
        "identity": torch.from_numpy(np.concatenate(ident)),
    }


def _as_input(frames: Tensor) -> Tensor:
    return frames.permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def evaluate_reader(reader: LPMMouthReader, data: dict[str, Tensor], blur: bool = False) -> float:
    """Pearson r of the reader's openings with the ground truth's on `data`."""
    x = _as_input(data["frames"])
    x = _soften(x) if blur else x
    pred = torch.cat(
        [reader(x[i : i + 512], data["boxes"][i : i + 512]) for i in range(0, len(x), 512)]
    )
    return float(torch.corrcoef(torch.stack([pred, data["opening"].to(pred.dtype)]))[0, 1])


def train_mouth_reader(
    source,
    steps: int = 1500,
    batch: int = 64,
    lr: float = 2e-3,
    max_frames: int = 8000,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[LPMMouthReader, dict[str, float]]:
    """Fit a reader on the source's frames, holding out a fifth of its identities; returns
    it frozen with its held-out correlations (sharp and blurred frames)."""
    torch.manual_seed(seed)
    data = collect_frames(source, max_frames, seed)
    held = data["identity"] % 5 == 4
    if bool(held.all()) or not bool(held.any()):  # too few identities to hold any out
        held = torch.arange(len(held)) % 5 == 4
    train = {k: v[~held] for k, v in data.items()}
    val = {k: v[held] for k, v in data.items()}
    reader = LPMMouthReader()
    opt = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    n = len(train["opening"])
    bar = progress_bar(steps, desc="mouth reader", unit="step", progress=progress)
    for step in range(steps):
        for g in opt.param_groups:  # cosine to 10%
            g["lr"] = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))
        idx = torch.randint(n, (batch,), generator=gen)
        x = _augment(_as_input(train["frames"][idx]), gen)
        jitter = (torch.rand(batch, 4, generator=gen) - 0.5) * 2.0  # a pixel of box noise
        loss = F.mse_loss(reader(x, train["boxes"][idx] + jitter), train["opening"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{loss.item():.4f}", refresh=False)
        bar.update(1)
    bar.close()
    reader.eval().requires_grad_(False)
    metrics = {
        "train_frames": n,
        "val_frames": int(held.sum()),
        "val_r": evaluate_reader(reader, val),
        "val_r_blurred": evaluate_reader(reader, val, blur=True),
    }
    return reader, metrics


def train_reader_file(
    data: str, cfg, out: str | Path, progress: bool | None = None, **kw
) -> dict[str, float]:
    """`lpm train mouth-reader`: a reader fitted on the clips of `data` (curated shards, a
    synth folder, s3://... or "synthetic") and saved to `out`; returns its figures."""
    from model_core.train.data import open_clip_source

    reader, metrics = train_mouth_reader(open_clip_source(data, cfg), progress=progress, **kw)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    reader.save(out)
    return metrics
