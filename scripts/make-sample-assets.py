#!/usr/bin/env python3
"""Regenerate the bundled demo character in model_core/assets/ (committed; run once).

Draws "Lumi", a stylised portrait, procedurally with PIL: a global appearance image, four body
views and two facial expressions; and records two lines with Debian's espeak-ng: Lumi's own
voice (the speaking track) and a user's question (the listening track). Needs espeak-ng.

    python scripts/make-sample-assets.py [--out model_core/assets/sample]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SS = 4  # supersampling factor: draw big, downsample for smooth edges

SKIN = (246, 205, 176)
SKIN_SHADE = (226, 176, 146)
HAIR = (72, 44, 92)
HAIR_LIGHT = (104, 70, 128)
SHIRT = (46, 134, 171)
IRIS = (58, 128, 96)
LIP = (196, 84, 96)
BG_TOP, BG_BOTTOM = (250, 236, 208), (236, 200, 160)

SPEAK_LINE = "Hi, I'm Lumi! Lovely to meet you. What shall we talk about today?"
LISTEN_LINE = "Hello there. Who are you?"


def _background(size: int) -> Image.Image:
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    rows = (1 - t) * np.array(BG_TOP) + t * np.array(BG_BOTTOM)
    arr = np.broadcast_to(rows, (size, size, 3)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def draw_character(view: str = "front", expression: str = "smile", size: int = 256) -> Image.Image:
    """Head-and-shoulders portrait; `view` turns the head, `expression` sets brows and mouth."""
    S = size * SS
    im = _background(S)
    d = ImageDraw.Draw(im)

    def box(cx, cy, rx, ry):  # ellipse bounding box from centre and radii, in unit coordinates
        return [(cx - rx) * S, (cy - ry) * S, (cx + rx) * S, (cy + ry) * S]

    turn = {"front": 0.0, "left": -1.0, "right": 1.0, "back": 0.0}[view]
    hx, hy, hrx, hry = 0.5, 0.42, 0.2, 0.24  # head centre and radii

    # Torso and shoulders, then neck.
    d.ellipse(box(0.5, 1.08, 0.44, 0.34), fill=SHIRT)
    d.rectangle([0.44 * S, 0.58 * S, 0.56 * S, 0.78 * S], fill=SKIN_SHADE)
    if view != "back":
        d.polygon([(0.42 * S, 0.75 * S), (0.58 * S, 0.75 * S), (0.5 * S, 0.86 * S)], fill=SKIN)
    # Long hair behind the head, falling to the shoulders.
    d.rounded_rectangle(
        [(hx - 0.25 - 0.03 * turn) * S, 0.3 * S, (hx + 0.25 - 0.03 * turn) * S, 0.76 * S],
        radius=0.12 * S,
        fill=HAIR,
    )
    # Ears, then the face.
    if view != "back":
        for side in (-1, 1):
            if side * turn > 0:
                continue  # the far ear is hidden when the head turns
            d.ellipse(
                box(hx + side * (hrx - 0.005) + 0.06 * turn, 0.45, 0.035, 0.05), fill=SKIN_SHADE
            )
    d.ellipse(box(hx, hy, hrx, hry), fill=SKIN)

    if view == "back":
        d.ellipse(box(hx, hy - 0.01, hrx + 0.025, hry + 0.02), fill=HAIR)
        d.arc(box(hx, hy - 0.05, hrx - 0.06, hry - 0.1), 200, 340, fill=HAIR_LIGHT, width=2 * SS)
        return im.resize((size, size), Image.Resampling.LANCZOS)

    fx = hx + 0.075 * turn  # the face's centre line moves with the turn
    # Fringe: a chord over the forehead with a side part.
    d.chord(box(hx, hy - 0.06, hrx + 0.02, hry - 0.02), 180, 360, fill=HAIR)
    d.polygon(
        [
            ((hx - 0.2) * S, (hy - 0.07) * S),
            ((fx + 0.04) * S, (hy - 0.2) * S),
            ((hx - 0.06) * S, (hy - 0.02) * S),
        ],
        fill=HAIR,
    )
    d.arc(box(hx + 0.02, hy - 0.1, 0.13, 0.1), 200, 300, fill=HAIR_LIGHT, width=3 * SS)

    # Eyes: white, iris, pupil, highlight; the far eye narrows when the head turns.
    surprise = expression == "surprise"
    for side in (-1, 1):
        ex = fx + side * 0.085
        squash = 1.0 - 0.45 * max(0.0, side * turn)
        rx, ry = 0.045 * squash, (0.05 if surprise else 0.04)
        d.ellipse(box(ex, hy + 0.02, rx, ry), fill=(255, 255, 255), outline=(60, 40, 50), width=SS)
        ix = ex + 0.012 * turn
        d.ellipse(box(ix, hy + 0.025, 0.026 * squash, 0.03), fill=IRIS)
        d.ellipse(box(ix, hy + 0.025, 0.013 * squash, 0.016), fill=(20, 20, 30))
        d.ellipse(box(ix - 0.009, hy + 0.012, 0.007, 0.007), fill=(255, 255, 255))
        # Brows: raised for surprise, tilted in for a frown.
        by = hy - (0.075 if surprise else 0.05)
        tilt = {"frown": 0.02, "smile": -0.005}.get(expression, 0.0) * side
        d.line(
            [((ex - 0.04) * S, (by - tilt) * S), ((ex + 0.04) * S, (by + tilt) * S)],
            fill=HAIR,
            width=int(0.014 * S),
        )
    # Nose and blush.
    d.arc(box(fx + 0.01 * turn, hy + 0.1, 0.02, 0.015), 20, 160, fill=SKIN_SHADE, width=2 * SS)
    for side in (-1, 1):
        blush = Image.new("RGBA", im.size, (0, 0, 0, 0))
        ImageDraw.Draw(blush).ellipse(
            box(fx + side * 0.12, hy + 0.11, 0.04, 0.022), fill=(240, 120, 130, 90)
        )
        im = Image.alpha_composite(im.convert("RGBA"), blush).convert("RGB")
    d = ImageDraw.Draw(im)
    # Mouth.
    my = hy + 0.16
    if expression == "smile":
        d.chord(box(fx, my - 0.02, 0.065, 0.045), 0, 180, fill=LIP)
        d.chord(box(fx, my - 0.02, 0.05, 0.02), 0, 180, fill=(255, 255, 255))
    elif surprise:
        d.ellipse(box(fx, my, 0.03, 0.04), fill=(120, 40, 50), outline=LIP, width=2 * SS)
    elif expression == "frown":
        d.arc(box(fx, my + 0.03, 0.05, 0.03), 200, 340, fill=LIP, width=int(0.012 * S))
    else:
        d.line(
            [((fx - 0.04) * S, my * S), ((fx + 0.04) * S, my * S)], fill=LIP, width=int(0.012 * S)
        )
    return im.resize((size, size), Image.Resampling.LANCZOS)


def face_crop(expression: str, size: int = 128) -> Image.Image:
    """A close-up of the face, as an expression reference is expected to be."""
    big = draw_character("front", expression, size=512)
    return big.crop((128, 72, 384, 328)).resize((size, size), Image.Resampling.LANCZOS)


def _save_png(im: Image.Image, path: Path) -> None:
    # A 64-colour palette keeps these flat drawings a few KB each.
    im.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _speak(text: str, voice: str, path: Path, speed: int = 150) -> None:
    """espeak-ng renders at 22.05 kHz; sox stores it at 16 kHz mono 16-bit to stay small."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True
        )
        subprocess.run(
            ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path), "norm", "-3"],
            check=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="model_core/assets/sample")
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    _save_png(draw_character("front", "smile", 256), out / "lumi.png")
    for view in ("front", "left", "right", "back"):
        _save_png(draw_character(view, "neutral", 128), out / f"body_{view}.png")
    for expr in ("smile", "surprise"):
        _save_png(face_crop(expr), out / f"face_{expr}.png")
    _speak(SPEAK_LINE, "en-us+f3", out / "speak.wav", speed=165)
    _speak(LISTEN_LINE, "en-gb", out / "listen.wav", speed=160)
    (out / "sample.json").write_text(
        json.dumps(
            {
                "name": "Lumi",
                "text": "a cheerful host greeting a visitor, smiling",
                "global": "lumi.png",
                "body": {v: f"body_{v}.png" for v in ("front", "left", "right", "back")},
                "face": {e: f"face_{e}.png" for e in ("smile", "surprise")},
                "speak": {"file": "speak.wav", "line": SPEAK_LINE},
                "listen": {"file": "listen.wav", "line": LISTEN_LINE},
            },
            indent=2,
        )
        + "\n"
    )
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(list(out.iterdir()))} files to {out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
