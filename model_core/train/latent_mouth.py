"""A small reader of the mouth's opening from the latent cells around the mouth.

The flow-matching error treats every latent number alike, and the mouth's movement is a
small share of them: on the performer's footage its pixels change within a clip by about
1% of their variance, so a generator lowers its error most by drawing an average mouth
(docs/training.md, "The decoder taught to hear"). This reader names the one direction in the
latent that the opening moves along. It is a two-layer MLP, fitted on a `LatentCache` in
a few seconds, from the mouth band of each latent frame (the cache's mouth box, resampled to
`GRID` cells of every channel) beside the same band of the window's framed picture (which
tells it the character's colours) to the ground truth's opening at that latent frame's video
frames. A linear reader finds little (r about 0.3 on held-out identities): a dark open mouth
on pale skin and on dark skin are different directions in the latent. The generator stages'
`mouth_latent` option scores the opening read from the clean latent a stage produces against
the opening read from the footage's (`Objective.opening_error`).

It is fitted on the training data's own ground truth; the bench's FaceProbe, which scores
lip sync, never enters training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GRID = (2, 4)  # rows x columns of the mouth band, in samples
HIDDEN = 128


def mouth_band(z: torch.Tensor, mouth: torch.Tensor, grid: tuple[int, int] = GRID):
    """Latents (B, C, F, h, w) and mouth boxes (B, F, 4) in latent cells -> features
    (B, F, C * rows * cols), the band bilinearly resampled (linear in z), and a (B, F) mask
    of the frames whose box is known."""
    b, c, f, h, w = z.shape
    box = mouth.float()
    known = ~box.isnan().any(-1)
    box = torch.nan_to_num(box, nan=0.0)
    rows, cols = grid
    ty = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows
    tx = (torch.arange(cols, dtype=torch.float32) + 0.5) / cols
    ys = box[..., 1:2] + ty * (box[..., 3:4] - box[..., 1:2])  # (B, F, rows) in cells
    xs = box[..., 0:1] + tx * (box[..., 2:3] - box[..., 0:1])
    gy = (2 * ys / h - 1)[..., :, None].expand(b, f, rows, cols)
    gx = (2 * xs / w - 1)[..., None, :].expand(b, f, rows, cols)
    pts = torch.stack([gx, gy], -1).reshape(b * f, rows, cols, 2).to(z)
    frames = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    out = F.grid_sample(frames, pts, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, f, c * rows * cols), known


def reader_features(z: torch.Tensor, mouth: torch.Tensor, picture: torch.Tensor):
    """The reader's input: the latent's mouth band beside the picture's (B, C, 1, h, w) band
    under the same boxes, (B, F, 2 * C * rows * cols), and the known-box mask (B, F)."""
    feats, known = mouth_band(z, mouth)
    pic, _ = mouth_band(picture.to(z).expand_as(z), mouth)
    return torch.cat([feats, pic], -1), known


class LatentMouthReader(nn.Module):
    """opening (B, F, tf) per video frame of each latent frame, from the latent's mouth band
    and the picture's. Frozen once fitted: it only passes gradients to what it reads."""

    def __init__(self, features: int, frames: int, hidden: int = HIDDEN):
        super().__init__()
        self.register_buffer("mean", torch.zeros(2 * features))
        self.register_buffer("std", torch.ones(2 * features))
        self.register_buffer("held_out_r", torch.tensor(float("nan")))
        self.net = nn.Sequential(
            nn.Linear(2 * features, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, frames),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net((feats - self.mean) / self.std)

    def read(self, z: torch.Tensor, mouth: torch.Tensor, picture: torch.Tensor):
        """Latents (B, C, F, h, w), boxes (B, F, 4), pictures (B, C, 1, h, w) -> openings
        (B, F, tf) and the (B, F) mask of frames whose box is known."""
        feats, known = reader_features(z, mouth, picture)
        return self(feats), known

    @classmethod
    def from_state(cls, state: dict) -> LatentMouthReader:
        w = state["net.0.weight"]
        reader = cls(w.shape[1] // 2, state["net.4.weight"].shape[0], w.shape[0])
        reader.load_state_dict(state)
        return reader.requires_grad_(False)


def _features(cache, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    feats, known = reader_features(
        cache.latents[index].float(), cache.mouth[index], cache.pictures[index].float()
    )
    target = cache.mouth_open[index].float()
    keep = known & ~target.isnan().any(-1)
    return feats[keep], target[keep]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm() + 1e-12))


def fit_latent_mouth_reader(
    cache, held_out: float = 0.25, steps: int = 1500, seed: int = 0
) -> LatentMouthReader:
    """Fit on a `LatentCache` with mouth boxes, openings and pictures. A share `held_out` of
    its identities (at least one, when there are two or more) is left out; the weights kept
    are those of the evaluation (every 100 steps) with the best correlation on them, which
    is `held_out_r`. A clear error without the data."""
    if cache.mouth is None or cache.mouth_open is None or cache.pictures is None:
        raise ValueError(
            "the latent mouth reader needs face boxes, mouth openings and pictures in the "
            "latent cache (curated shards or performer recordings; a cache built before "
            "openings were kept is rebuilt)"
        )
    ids = sorted(set(cache.identities))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_out = max(1, int(round(held_out * len(ids)))) if len(ids) > 1 else 0
    out_ids = {ids[i] for i in order[:n_out]}
    train = [i for i, k in enumerate(cache.identities) if k not in out_ids]
    test = [i for i, k in enumerate(cache.identities) if k in out_ids]
    x, y = _features(cache, train)
    if len(x) < 8:
        raise ValueError(f"the latent mouth reader needs more known mouths, got {len(x)} frames")
    xt, yt = _features(cache, test) if test else (x, y)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reader = LatentMouthReader(x.shape[1] // 2, y.shape[1])
    reader.mean.copy_(x.mean(0))
    reader.std.copy_(x.std(0) + 1e-4)
    noise = 0.1 * reader.std
    opt = torch.optim.AdamW(reader.parameters(), lr=1e-3, weight_decay=1e-2)
    best, best_state = -2.0, None
    for step in range(1, steps + 1):
        i = torch.randint(len(x), (min(256, len(x)),), generator=g)
        xi = x[i] + noise * torch.randn(x[i].shape, generator=g)
        loss = (reader(xi) - y[i]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            with torch.no_grad():
                r = _corr(reader(xt), yt)
            if r > best:
                best, best_state = r, {k: v.clone() for k, v in reader.state_dict().items()}
    reader.load_state_dict(best_state)
    reader.held_out_r.fill_(best if test else float("nan"))
    return reader.requires_grad_(False)
