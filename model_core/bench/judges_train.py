"""`lpm bench train-judges`: train the bench's FaceProbe and IdentityEmbedder on performer
renders of training-split identities, validate them on held-out ones, save them.

The embedder is trained with hard negatives. Each identity's two twins (`twin_identity`: the
same colours with another face, and the same colours with another face, hair, clothes and
accessory) are classes of their own, drawn into the same batch. Heavily blurred frames (the
right colours in the right places, no face) are nobody's. Without them the embedder scores a
character's face twin as high as the character itself and the footage blurred until no
face is left nearly as high: it had learnt colour and layout, not a face.

The frames are single performer renders with every pose parameter drawn at random (not
conversation scripts), framed like the bench footage with extra jitter, so the judges see
each mouth opening, nod and turn with any expression, gesture, background and framing.
Training uses blur, noise and colour augmentation so that a judge reads a decoded,
slightly soft generated frame the way it reads a crisp render.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_core.bench.judges import (
    PROBE_SCALES,
    PROBE_TARGETS,
    FaceProbe,
    IdentityEmbedder,
    Judges,
    frames_to_input,
)
from model_core.bench.scenarios import bench_camera
from model_core.data.performer.camera import make_background
from model_core.data.performer.identity import (
    HELD_OUT_EVERY,
    TWIN_KINDS,
    sample_identity,
    twin_identity,
)
from model_core.data.performer.render import (
    EXPRESSIONS,
    GESTURES,
    CharacterRenderer,
    Pose,
    face_params,
    reference_set,
)


@dataclass
class JudgeTrainSettings:
    seed: int = 0
    # The shipped judges were trained with these defaults (about 30 min on a busy 2-core box).
    probe_frames: int = 4000
    probe_epochs: int = 8
    probe_identities: int = 240
    embed_identities: int = 120
    embed_views: int = 8  # random renders per identity, besides its 13 reference images
    embed_steps: int = 1500
    # Hard negatives: each batch's identities come with their face twins (and a few palette
    # twins) as classes of their own, and `blur_negatives` heavily blurred frames that are
    # nobody's. 0/False gives the embedder as it was first trained (colour and layout).
    hard_negatives: bool = True
    embed_size: int = 96  # the embedder's input, px (a face twin differs by a few pixels)
    blur_negatives: int = 8
    val_identities: int = 40
    batch: int = 64
    probe_batch: int = 32
    threads: int | None = None


def train_identity_indices(n: int) -> list[int]:
    """The first n training-split identities (never index % 10 == 9)."""
    return [j + j // (HELD_OUT_EVERY - 1) for j in range(n)]


def heldout_identity_indices(n: int, offset: int = 500) -> list[int]:
    return [(offset + j) * HELD_OUT_EVERY + HELD_OUT_EVERY - 1 for j in range(n)]


def random_pose(rng: np.random.Generator) -> Pose:
    u = rng.uniform
    gesture = str(rng.choice(GESTURES)) if u() < 0.35 else "none"
    return Pose(
        body_yaw=float(rng.choice([0.0, u(-70, 70)])),
        yaw=u(-15, 15),
        pitch=u(-8, 14) if u() < 0.7 else 0.0,
        roll=u(-5, 5),
        sway_x=u(-0.08, 0.08),
        breath=u(-0.06, 0.06),
        mouth_open=0.0 if u() < 0.35 else u(0, 1.0),
        mouth_round=u(0, 1),
        expression=str(rng.choice(EXPRESSIONS)),
        intensity=u(0, 1),
        brow_raise=0.0 if u() < 0.5 else u(0, 0.9),
        smile_extra=0.0 if u() < 0.6 else u(0, 0.4),
        blink=0.0 if u() < 0.85 else u(0, 1),
        gaze_x=u(-0.8, 0.8),
        gaze_y=u(-0.5, 0.5),
        gesture=gesture,
        gesture_amount=u(0, 1) if gesture != "none" else 0.0,
        gesture_phase=u(0, 3),
        beat=u(0, 1),
    )


class JudgeFrames:
    """Random labelled performer frames of a set of identities."""

    def __init__(self, identities: list[int], seed: int, size: int = 128, population: int = 0):
        self.rng = np.random.default_rng([seed, 0x1D6E])
        self.size = size
        self.ids = [sample_identity(i, population) for i in identities]
        self.backgrounds = [
            make_background(int(self.rng.integers(1 << 30)), size) for _ in range(48)
        ]
        self._renderers: dict[int, CharacterRenderer] = {}

    def render(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One frame of identity number k: uint8 (H, W, 3) and its probe targets."""
        identity = self.ids[k]
        r = self._renderers.setdefault(k, CharacterRenderer(identity, self.size, self.size))
        pose = random_pose(self.rng)
        jitter = self.rng.uniform(-1, 1, 3) * (0.2, 0.08, 0.06)
        cam = bench_camera(identity, pose.body_yaw, self.size, jitter)
        bg = self.backgrounds[int(self.rng.integers(len(self.backgrounds)))]
        img = np.clip(r.render(pose, cam, bg) + 0.5, 0, 255).astype(np.uint8)
        fp = face_params(pose)
        y = np.float32([fp.mouth_open, pose.pitch, fp.brow, pose.body_yaw + pose.yaw])
        return img, y / np.float32(PROBE_SCALES)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ks = self.rng.integers(len(self.ids), size=n)
        imgs, ys = zip(*(self.render(int(k)) for k in ks))
        return np.stack(imgs), np.stack(ys), ks


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur (one of four strengths), noise and colour jitter on a (B, 3, H, W) batch in [-1, 1]."""
    b = x.shape[0]
    level = torch.randint(0, 4, (b,), generator=g)
    k = torch.arange(-3, 4, dtype=torch.float32)
    out = x.clone()
    for lv, sigma in ((1, 0.6), (2, 1.0), (3, 1.5)):
        sel = level == lv
        if sel.any():
            out[sel] = _separable_blur(x[sel], _gaussian_taps(k, sigma))
    gain = 1 + (torch.rand(b, 3, 1, 1, generator=g) - 0.5) * 0.2
    bias = (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.2
    noise = torch.randn(x.shape, generator=g) * (torch.rand(b, 1, 1, 1, generator=g) * 0.06)
    return (out * gain + bias + noise).clamp(-1, 1)


def train_probe(s: JudgeTrainSettings, log: Callable[[str], None]) -> tuple[FaceProbe, dict]:
    torch.manual_seed(s.seed)
    data = JudgeFrames(train_identity_indices(s.probe_identities), s.seed)
    imgs, ys, _ = data.batch(s.probe_frames)
    probe = FaceProbe()
    x_all = probe.inputs(imgs)
    y_all = torch.from_numpy(ys)
    steps = s.probe_epochs * (len(x_all) // s.probe_batch)
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(s.seed)
    probe.train()
    t0, step = time.perf_counter(), 0
    for epoch in range(s.probe_epochs):
        perm = torch.randperm(len(x_all), generator=g)
        total = 0.0
        for i in range(0, len(perm) - s.probe_batch + 1, s.probe_batch):
            idx = perm[i : i + s.probe_batch]
            loss = F.smooth_l1_loss(probe(augment(x_all[idx], g)), y_all[idx], beta=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            step += 1
        log(
            f"probe epoch {epoch + 1}/{s.probe_epochs}: loss {total / max(1, len(perm) // s.probe_batch):.4f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    probe.eval()
    val = JudgeFrames(heldout_identity_indices(s.val_identities), s.seed + 1)
    vi, vy, _ = val.batch(800)
    pred = probe.predict(vi)
    report = {}
    for j, k in enumerate(PROBE_TARGETS):
        truth = vy[:, j] * PROBE_SCALES[j]
        report[k] = {
            "mae": round(float(np.abs(pred[k] - truth).mean()), 4),
            "corr": round(float(np.corrcoef(pred[k], truth)[0, 1]), 4),
        }
    log(f"probe on held-out identities: {report}")
    return probe, {
        "train_frames": s.probe_frames,
        "epochs": s.probe_epochs,
        "heldout": report,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def identity_views(data: JudgeFrames, views: int) -> tuple[np.ndarray, np.ndarray]:
    """Each identity's 13 reference images plus `views` random renders, and their labels."""
    imgs, labels = [], []
    for k, identity in enumerate(data.ids):
        imgs.extend(reference_set(identity, data.size).values())
        imgs.extend(data.render(k)[0] for _ in range(views))
        labels.extend([k] * (13 + views))
    return np.stack(imgs), np.asarray(labels)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss: pull same-identity embeddings together, push the rest
    apart. Anchors without a positive in the batch (the blurred negatives, labelled < 0) are
    only ever pushed away from."""
    sim = z @ z.T / tau
    eye = torch.eye(len(z), dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye & (labels[:, None] >= 0)
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    anchors = pos.any(1)
    return -((logp * pos).sum(1)[anchors] / pos.sum(1)[anchors]).mean()


def _gaussian_taps(k: torch.Tensor, sigma: float) -> torch.Tensor:
    w = torch.exp(-(k**2) / (2 * sigma**2))
    return w / w.sum()


def _separable_blur(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) convolved with `taps` across, then down (edges replicated)."""
    r = len(taps) // 2
    w = taps.view(1, 1, 1, -1).expand(3, 1, 1, -1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), w, groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), w.transpose(2, 3), groups=3)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> each image blurred with its own Gaussian `sigma` (pixels, (B,))."""
    r = int(np.ceil(3 * float(sigma.max())))
    k = torch.arange(-r, r + 1, dtype=torch.float32)
    return torch.cat(
        [_separable_blur(xi[None], _gaussian_taps(k, float(si))) for xi, si in zip(x, sigma)]
    )


# Blur of the negatives as a fraction of the width: from above the strongest augmentation a
# positive gets (1.5 px of 64, 0.023) to the bench's `blurred` row (a sixteenth).
BLUR_NEGATIVE_SIGMA = (0.04, 0.0625)


def with_twins(data: JudgeFrames) -> int:
    """Append each identity's twins to `data.ids` (face twins, then palette twins); returns
    the number of original identities n: identity k's twin of kind j is k + (j + 1) * n."""
    n = len(data.ids)
    data.ids = data.ids + [twin_identity(i, kind) for kind in TWIN_KINDS for i in data.ids[:n]]
    return n


def embedder_batch(
    by_id: list[np.ndarray], n: int, s: JudgeTrainSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and labels of one batch, and which of them become blurred negatives.

    Without hard negatives: batch/4 random identities, 4 views each. With them: batch/8
    identities each with its face twin, a quarter of them with their palette twin as well,
    and `blur_negatives` extra views of the identities labelled -1, -2, ..."""
    per_id = 4
    if not s.hard_negatives:
        ks = rng.choice(len(by_id), size=max(2, s.batch // 4), replace=False)
    else:
        base = rng.choice(n, size=max(2, s.batch // 8), replace=False)
        palette = base[: max(1, len(base) // 4)]
        ks = np.concatenate([base, base + n, palette + 2 * n])
    idx = np.concatenate([rng.choice(by_id[k], per_id, replace=False) for k in ks])
    labels = np.repeat(ks, per_id)
    blur = np.zeros(len(idx), bool)
    if s.hard_negatives and s.blur_negatives:
        extra = np.concatenate(
            [rng.choice(by_id[k], 1) for k in rng.choice(ks[: len(ks) // 2 + 1], s.blur_negatives)]
        )
        idx = np.concatenate([idx, extra])
        labels = np.concatenate([labels, -1 - np.arange(len(extra))])
        blur = np.concatenate([blur, np.ones(len(extra), bool)])
    return idx, labels, blur


def train_embedder(
    s: JudgeTrainSettings, log: Callable[[str], None]
) -> tuple[IdentityEmbedder, dict]:
    torch.manual_seed(s.seed)
    data = JudgeFrames(train_identity_indices(s.embed_identities), s.seed + 2)
    n = with_twins(data) if s.hard_negatives else len(data.ids)
    imgs, labels = identity_views(data, s.embed_views)
    net = IdentityEmbedder(input_size=s.embed_size)
    x_all = frames_to_input(imgs, net.input_size)
    by_id = [np.nonzero(labels == k)[0] for k in range(len(data.ids))]
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=s.embed_steps, pct_start=0.1)
    g = torch.Generator().manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    net.train()
    t0, run = time.perf_counter(), 0.0
    lo, hi = (f * net.input_size for f in BLUR_NEGATIVE_SIGMA)
    for step in range(s.embed_steps):
        idx, lab, blur = embedder_batch(by_id, n, s, rng)
        x = augment(x_all[torch.from_numpy(idx)], g)
        if blur.any():
            sel = torch.from_numpy(blur)
            x[sel] = gaussian_blur(x[sel], lo + (hi - lo) * torch.rand(int(sel.sum()), generator=g))
        loss = supcon_loss(net(x), torch.from_numpy(lab))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        run = 0.95 * run + 0.05 * lv if step else lv
        if (step + 1) % 50 == 0:
            log(
                f"embedder step {step + 1}/{s.embed_steps}: loss {run:.4f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    net.eval()
    report = validate_embedder(net, s)
    log(f"embedder on held-out identities: {report}")
    return net, {
        "identities": s.embed_identities,
        "views": 13 + s.embed_views,
        "steps": s.embed_steps,
        "input_size": net.input_size,
        "hard_negatives": s.hard_negatives,
        "blur_negatives": s.blur_negatives if s.hard_negatives else 0,
        "heldout": report,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def validate_embedder(net: IdentityEmbedder, s: JudgeTrainSettings) -> dict:
    """On held-out identities: top-1 identification of frames among 10 reference sets, and
    similarities; then the hard cases: the same frames against their identity's face and
    palette twins' reference sets (`*_twin_top1`: how often the frames' own set wins), and
    the frames blurred as the bench's `blurred` row blurs them."""
    from model_core.bench.validation import blur_footage

    out = {}
    for name, population in (("heldout", 0), ("unseen_population", 17)):
        val = JudgeFrames(
            heldout_identity_indices(s.val_identities), s.seed + 3, population=population
        )
        refs = [net.embed(np.stack(list(reference_set(i, 128).values()))) for i in val.ids]
        hits, own, other, blurred = [], [], [], []
        twin_sim = {kind: [] for kind in TWIN_KINDS}
        twin_win = {kind: [] for kind in TWIN_KINDS}
        for k in range(len(val.ids)):
            frames = np.stack([val.render(k)[0] for _ in range(6)])
            z = net.embed(frames)
            cands = [(k + j) % len(val.ids) for j in range(10)]
            sims = np.stack([(z @ refs[c].T).max(1) for c in cands], 1)  # (6, 10)
            hits.extend(sims.argmax(1) == 0)
            own.extend(sims[:, 0])
            other.extend(sims[:, 1:].ravel())
            blurred.extend((net.embed(blur_footage(frames)) @ refs[k].T).max(1))
            for kind in TWIN_KINDS:
                twin = twin_identity(val.ids[k], kind)
                t = (z @ net.embed(np.stack(list(reference_set(twin, 128).values()))).T).max(1)
                twin_sim[kind].extend(t)
                twin_win[kind].extend(sims[:, 0] > t)
        out[name] = {
            "top1_of_10": round(float(np.mean(hits)), 4),
            "own_similarity": round(float(np.mean(own)), 4),
            "other_similarity": round(float(np.mean(other)), 4),
            "blurred_similarity": round(float(np.mean(blurred)), 4),
            **{f"{k}_twin_similarity": round(float(np.mean(v)), 4) for k, v in twin_sim.items()},
            **{f"{k}_twin_top1": round(float(np.mean(v)), 4) for k, v in twin_win.items()},
        }
    return out


JUDGE_NAMES = ("probe", "embedder")


def train_judges(
    s: JudgeTrainSettings,
    log: Callable[[str], None] = print,
    only: str | None = None,
    keep: Judges | None = None,
) -> Judges:
    """Both judges; with `only` ("probe" or "embedder"), that one, the other taken from
    `keep` (and its training record with it)."""
    if only not in (None, *JUDGE_NAMES):
        raise ValueError(f"only must be one of {JUDGE_NAMES}, got {only!r}")
    if only and keep is None:
        raise ValueError(f"training only the {only} needs the judges to keep the other from")
    if s.threads:
        torch.set_num_threads(s.threads)
    info = {"seed": s.seed}
    if only == "embedder":
        probe, info["probe"] = keep.probe, keep.info.get("probe", {})
    else:
        probe, info["probe"] = train_probe(s, log)
    if only == "probe":
        embedder, info["embedder"] = keep.embedder, keep.info.get("embedder", {})
    else:
        embedder, info["embedder"] = train_embedder(s, log)
    return Judges(probe, embedder, info)
