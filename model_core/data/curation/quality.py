"""Stage 2, quality filtering and cropping: drop blurred, noisy, over-compressed, subject-less,
off-frame and too-short shots; locate the character and fix one square crop per shot.

All measures come from a few evenly spaced frames of the shot:
- subject: the wall behind the character is smooth, so a robust per-channel line fitted to the
  frame's left and right border columns predicts the background; pixels far from it are the
  subject. Its area, box and position give "nosubject" and "offframe".
- noise: robust sigma of the Laplacian (flat regions dominate a clean frame, so the median is
  near zero unless there is grain).
- blur: the sharpest edges in the subject (high percentile of the gradient magnitude).
- compression: "blockiness", the gradient across 8x8 block borders against inside blocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model_core.data.curation.source import RawRecording


@dataclass
class QualityConfig:
    min_frames: int = 36  # 1.5 s at 24 fps
    sample_frames: int = 6
    fg_threshold: float = 30.0
    min_subject_area: float = 0.12
    offframe_center: float = 0.2  # subject centre within this fraction of a side edge
    offframe_top: float = 0.34  # subject starting this far down the frame: head not in frame
    max_noise: float = 4.0
    min_sharpness: float = 28.0
    max_blockiness: float = 2.0
    crop_size: int = 128


def _gray(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def _fit_line(ys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, float]:
    """Robust per-channel colour = a*y + b fit; returns coefficients and the residual spread."""
    keep = np.ones(len(ys), bool)
    coef = np.zeros((2, 3), np.float32)
    for _ in range(3):
        A = np.stack([ys[keep], np.ones(int(keep.sum()))], 1)
        coef, *_ = np.linalg.lstsq(A, vals[keep], rcond=None)
        resid = np.abs(vals - np.stack([ys, np.ones_like(ys)], 1) @ coef).max(axis=1)
        keep = resid < max(12.0, float(np.percentile(resid, 50)) * 2)
        if keep.sum() < 8:
            break
    return coef, float(np.percentile(resid, 75))


def subject_mask(img: np.ndarray, threshold: float) -> np.ndarray:
    """Foreground mask from a robust linear-in-y background fit of a border: the left or the
    right three columns, whichever the wall explains better (the subject may touch one)."""
    h, w, _ = img.shape
    ys = np.arange(h, dtype=np.float32)
    yy = np.repeat(ys, 3)
    fits = [
        _fit_line(yy, img[:, cols].astype(np.float32).reshape(-1, 3))
        for cols in (slice(0, 3), slice(w - 3, w))
    ]
    coef = min(fits, key=lambda f: f[1])[0]
    bg = np.stack([ys, np.ones_like(ys)], 1) @ coef
    diff = np.abs(img.astype(np.float32) - bg[:, None, :]).max(axis=2)
    return diff > threshold


def noise_sigma(gray: np.ndarray) -> float:
    lap = gray[1:-1, 1:-1] * 4 - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(1.4826 * np.median(np.abs(lap)) / np.sqrt(20.0))


def sharpness(gray: np.ndarray, mask: np.ndarray) -> float:
    gx = np.abs(np.diff(gray, axis=1))[:-1]
    gy = np.abs(np.diff(gray, axis=0))[:, :-1]
    g = np.maximum(gx, gy)
    m = mask[:-1, :-1]
    vals = g[m] if m.sum() > 50 else g.reshape(-1)
    return float(np.percentile(vals, 99))


def blockiness(gray: np.ndarray) -> float:
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    bx = (np.arange(dx.shape[1]) % 8) == 7
    by = (np.arange(dy.shape[0]) % 8) == 7
    on = dx[:, bx].mean() + dy[by].mean()
    off = dx[:, ~bx].mean() + dy[~by].mean()
    return float(on / (off + 0.5))


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) < 20:
        return None
    return (
        float(np.percentile(xs, 1)),
        float(np.percentile(ys, 1)),
        float(np.percentile(xs, 99)) + 1,
        float(np.percentile(ys, 99)) + 1,
    )


def crop_box(subject: tuple[float, float, float, float], h: int, w: int) -> list[int]:
    """A square around the subject's head and shoulders, inside the frame."""
    x0, y0, x1, y1 = subject
    side = int(round(min(h, w, max(1.15 * (x1 - x0), 0.45 * min(h, w)))))
    cx = (x0 + x1) / 2
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(y0 - 0.06 * side, 0), h - side)))
    return [left, top, left + side, top + side]


def assess_shot(frames: np.ndarray, cfg: QualityConfig) -> dict:
    n, h, w, _ = frames.shape
    idx = np.linspace(0, n - 1, min(cfg.sample_frames, n)).round().astype(int)
    areas, boxes, noises, sharps, blocks = [], [], [], [], []
    for i in idx:
        img = frames[i].astype(np.float32)
        gray = _gray(img)
        mask = subject_mask(img, cfg.fg_threshold)
        areas.append(float(mask.mean()))
        boxes.append(_box_of(mask))
        noises.append(noise_sigma(gray))
        sharps.append(sharpness(gray, mask))
        blocks.append(blockiness(gray))
    valid = [b for b in boxes if b is not None]
    subject = tuple(float(np.median([b[k] for b in valid])) for k in range(4)) if valid else None
    m = {
        "subject_area": round(float(np.median(areas)), 4),
        "noise": round(float(np.median(noises)), 3),
        "sharpness": round(float(np.median(sharps)), 3),
        "blockiness": round(float(np.median(blocks)), 3),
        "subject_box": [round(v, 1) for v in subject] if subject else None,
    }
    reason = None
    touches = subject is not None and (subject[0] < 2 or subject[2] > w - 2)
    cx = (subject[0] + subject[2]) / 2 if subject else w / 2
    if n < cfg.min_frames:
        reason = "too_short"
    elif (
        subject is not None
        and m["subject_area"] > 0.02
        and touches
        and (cx < cfg.offframe_center * w or cx > (1 - cfg.offframe_center) * w)
    ):
        reason = "offframe"  # part of someone at the side edge
    elif subject is None or m["subject_area"] < cfg.min_subject_area:
        reason = "nosubject"
    elif subject[1] > cfg.offframe_top * h:
        reason = "offframe"  # a body without a head: framed too low
    elif m["noise"] > cfg.max_noise:
        reason = "noise"
    elif m["blockiness"] > cfg.max_blockiness:
        reason = "compression"
    elif m["sharpness"] < cfg.min_sharpness:
        reason = "blur"
    m["reason"] = reason
    if reason is None:
        m["crop"] = crop_box(subject, h, w)
    return m


def filter_quality(
    rec: RawRecording, shots_manifest: dict, cfg: QualityConfig | None = None
) -> dict:
    """Stage 2 on one recording -> manifest of kept shots (with crop) and dropped ones (why)."""
    cfg = cfg or QualityConfig()
    t0 = time.perf_counter()
    kept, dropped = [], []
    for shot in shots_manifest["shots"]:
        s, e = shot["start"], shot["end"]
        m = assess_shot(rec.frames[s:e], cfg)
        entry = {"id": shot["id"], "start": s, "end": e, **m}
        (dropped if m["reason"] else kept).append(entry)
    return {
        "stage": "quality",
        "recording": rec.name,
        "frames_in": shots_manifest["frames_kept"],
        "frames_kept": sum(k["end"] - k["start"] for k in kept),
        "kept": kept,
        "dropped": dropped,
        "seconds": round(time.perf_counter() - t0, 4),
    }


def crop_box_coords(
    box: list[float] | tuple[float, ...] | None, crop: list[int], size: int
) -> list[float] | None:
    """A box (x0, y0, x1, y1) in source pixels -> the same box in the pixels of `crop_frames`'
    size x size output (None stays None: no face in that frame)."""
    if box is None:
        return None
    x0, y0, x1, y1 = crop
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return [
        round((box[0] - x0) * sx, 2),
        round((box[1] - y0) * sy, 2),
        round((box[2] - x0) * sx, 2),
        round((box[3] - y0) * sy, 2),
    ]


def crop_frames(frames: np.ndarray, box: list[int], size: int) -> np.ndarray:
    """Crop a (T, H, W, 3) uint8 clip to `box` and resize to size x size (bilinear)."""
    x0, y0, x1, y1 = box
    clip = (
        torch.from_numpy(np.ascontiguousarray(frames[:, y0:y1, x0:x1])).permute(0, 3, 1, 2).float()
    )
    if clip.shape[-1] != size or clip.shape[-2] != size:
        clip = F.interpolate(
            clip, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return clip.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
