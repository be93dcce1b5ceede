"""The camera plan of a raw recording: shots, cuts and dissolves, zooms and re-framings,
backgrounds, and the planted defects that curation has to find.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from model_core.data.performer.raster import Canvas, rgb, vertical_gradient
from model_core.data.performer.render import Camera

DEFECTS = ("blur", "noise", "compression", "offframe", "nosubject", "audio_mismatch")
# Shots shorter than this are planted "too_short" defects (curation drops < 1.5 s).
SHORT_SHOT = (10, 22)


@dataclass
class Setup:
    """One camera position: background, framing and which side of the character it sees."""

    background: int  # seed of the background
    scale: float  # relative to the frame: pixels per head radius / frame size
    cx: float  # head centre, fraction of the frame width
    cy: float
    body_yaw: float


@dataclass
class Shot:
    index: int
    start: int  # first frame (inclusive); a dissolve's frames belong to the incoming shot
    end: int  # exclusive
    setup: int
    transition: str  # "start" | "cut" | "dissolve"
    transition_frames: int
    zoom: float  # scale multiplier reached at the end of the shot (1.0 = static)
    pan: float  # head-centre drift over the shot, fraction of the frame width
    defect: str | None
    defect_strength: float

    def to_dict(self) -> dict:
        return asdict(self)


def plan_setups(rng: np.random.Generator) -> list[Setup]:
    setups = []
    for _ in range(int(rng.integers(3, 5))):
        kind = rng.choice(["medium", "close", "wide"], p=[0.5, 0.3, 0.2])
        scale = {"medium": 1 / 8.0, "close": 1 / 5.2, "wide": 1 / 11.0}[kind] * rng.uniform(
            0.92, 1.08
        )
        cy = {"medium": 0.36, "close": 0.45, "wide": 0.33}[kind] + rng.uniform(-0.03, 0.03)
        yaw = float(rng.choice([0.0, 0.0, -35.0, 35.0, -65.0, 65.0]))
        setups.append(
            Setup(
                int(rng.integers(1 << 30)),
                round(scale, 5),
                round(0.5 + rng.uniform(-0.12, 0.12), 4),
                round(cy, 4),
                yaw,
            )
        )
    return setups


def plan_shots(
    rng: np.random.Generator, frames: int, fps: int, setups: list[Setup], defect_rate: float = 0.3
) -> list[Shot]:
    shots: list[Shot] = []
    start, setup = 0, int(rng.integers(len(setups)))
    while start < frames:
        if shots and rng.uniform() < 0.08:
            length = int(rng.integers(*SHORT_SHOT))
        else:
            length = int(rng.uniform(4.0, 11.0) * fps)
        end = min(frames, start + length)
        if frames - end < 2 * fps:  # no tail fragment
            end = frames
        short = end - start < SHORT_SHOT[1] + 1
        defect = None
        if not short and rng.uniform() < defect_rate:
            defect = str(rng.choice(DEFECTS))
        dissolve = bool(shots) and rng.uniform() < 0.2
        shots.append(
            Shot(
                index=len(shots),
                start=start,
                end=end,
                setup=setup,
                transition="start" if not shots else ("dissolve" if dissolve else "cut"),
                transition_frames=int(rng.integers(8, 17)) if dissolve else 0,
                zoom=round(float(rng.uniform(0.85, 1.2)) if rng.uniform() < 0.35 else 1.0, 4),
                pan=round(float(rng.uniform(-0.08, 0.08)) if rng.uniform() < 0.15 else 0.0, 4),
                defect="too_short" if short else defect,
                defect_strength=round(float(rng.uniform(0.6, 1.0)), 4),
            )
        )
        start = end
        setup = (setup + 1 + int(rng.integers(len(setups) - 1))) % len(setups)
    return shots


def shot_camera(shot: Shot, setup: Setup, frame: int, size: int) -> Camera:
    """The camera of a shot at a frame: static, slowly zooming, or re-framing."""
    u = (frame - shot.start) / max(1, shot.end - shot.start - 1)
    scale = setup.scale * size * (1.0 + (shot.zoom - 1.0) * u)
    cx = (setup.cx + shot.pan * u) * size
    cy = setup.cy * size
    if shot.defect == "offframe":
        # Most of the subject outside the frame: head centre beyond an edge.
        side = 1 if setup.background % 2 else -1
        cx = size * (0.5 + side * (0.42 + 0.2 * shot.defect_strength))
        cy = cy - size * 0.05
    return Camera(scale=scale, cx=cx, cy=cy)


def make_background(seed: int, size: int) -> np.ndarray:
    """A room: a vertical gradient wall with soft panels, and a floor line (float32 0..255)."""
    rng = np.random.default_rng(seed)
    hue = rng.uniform(0, 1)
    top = _hsv(hue, rng.uniform(0.05, 0.4), rng.uniform(0.55, 0.95))
    bottom = _hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.7))
    cv = Canvas(size, size)
    cv.set_background(vertical_gradient(size, size, top, bottom))
    for _ in range(int(rng.integers(1, 4))):
        x0 = rng.uniform(0, size)
        w = rng.uniform(0.08, 0.3) * size
        shade = rgb(top) * rng.uniform(0.85, 1.15)
        cv.rect(x0, 0, x0 + w, size, np.clip(shade, 0, 255), alpha=0.35)
    return cv.img.copy()


def make_empty_scene(seed: int, size: int) -> np.ndarray:
    """A background with a plant or a lamp in it: a shot with no subject."""
    img = make_background(seed, size)
    rng = np.random.default_rng(seed + 1)
    cv = Canvas(size, size)
    cv.set_background(img)
    x = rng.uniform(0.2, 0.8) * size
    cv.rect(x - 0.05 * size, 0.75 * size, x + 0.05 * size, size, rgb((120, 80, 50)))
    for k in range(5):
        cv.ellipse(
            x + rng.uniform(-0.08, 0.08) * size,
            (0.62 + rng.uniform(-0.08, 0.08)) * size,
            0.06 * size,
            0.09 * size,
            rgb((40, 110 + 20 * k, 50)),
        )
    return cv.img.copy()


_DCT = np.array(
    [
        [
            math.cos((2 * x + 1) * u * math.pi / 16) * (math.sqrt(0.125) if u == 0 else 0.5)
            for x in range(8)
        ]
        for u in range(8)
    ],
    np.float32,
)
_QUANT = 1.0 + np.add.outer(np.arange(8), np.arange(8)).astype(np.float32) * 1.5


def apply_visual_defect(
    img: np.ndarray, defect: str | None, strength: float, rng: np.random.Generator
) -> np.ndarray:
    """Blur, sensor noise or heavy block-DCT compression on a float32 (H, W, 3) frame."""
    if defect == "blur":
        sigma = 1.6 + 1.6 * strength
        return gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest")
    if defect == "noise":
        return img + rng.normal(0, 10 + 12 * strength, img.shape).astype(np.float32)
    if defect == "compression":
        h, w, _ = img.shape
        hb, wb = h // 8, w // 8
        y = img[: hb * 8, : wb * 8] - 128.0
        blocks = y.reshape(hb, 8, wb, 8, 3).transpose(0, 2, 4, 1, 3)
        coef = _DCT @ blocks @ _DCT.T
        q = _QUANT * (14 + 22 * strength)
        coef = np.round(coef / q) * q
        out = img.copy()
        out[: hb * 8, : wb * 8] = (_DCT.T @ coef @ _DCT).transpose(0, 3, 1, 4, 2).reshape(
            hb * 8, wb * 8, 3
        ) + 128.0
        return out
    return img


def _hsv(h, s, v):
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (r * 255, g * 255, b * 255)
