"""Draws one character frame from an identity, a pose and a camera.

World units are head radii with the head centre at the origin (y points down). The head is a
sphere for feature placement: a feature at longitude `phi` moves to `sin(phi + yaw)` and is
foreshortened by `cos(phi + yaw)`, which gives front, three-quarter, profile and back views
from one description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model_core.data.performer.identity import CharacterIdentity
from model_core.data.performer.raster import Canvas, rgb

EXPRESSIONS = ("neutral", "smile", "laugh", "frown", "surprise", "anger", "sad", "thinking")
VIEWS = {"front": 0.0, "left": -75.0, "right": 75.0, "back": 180.0}
GESTURES = ("none", "beat", "wave", "point", "shrug", "hand_to_chin")

# Face parameters per expression: smile, brow raise, brow tilt (+ = inner ends down),
# eye openness, base mouth opening, mouth rounding, blush, gaze (x, y).
_EXPRESSION_FACE = {
    "neutral": (0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 0.0, 0.0, 0.0),
    "smile": (0.75, 0.15, 0.0, 0.9, 0.0, 0.1, 0.25, 0.0, 0.0),
    "laugh": (1.0, 0.3, -0.1, 0.45, 0.65, 0.1, 0.55, 0.0, 0.0),
    "frown": (-0.7, -0.25, 0.35, 0.95, 0.0, 0.3, 0.0, 0.0, 0.2),
    "surprise": (0.0, 1.0, -0.2, 1.4, 0.55, 0.85, 0.0, 0.0, 0.0),
    "anger": (-0.45, -0.5, 1.0, 0.8, 0.1, 0.1, 0.3, 0.0, 0.0),
    "sad": (-0.55, 0.25, -0.9, 0.7, 0.0, 0.3, 0.0, 0.0, 0.5),
    "thinking": (-0.15, 0.45, 0.3, 0.85, 0.0, 0.5, 0.0, 0.6, -0.7),
}


@dataclass
class Pose:
    """Everything that changes frame to frame; angles in degrees."""

    body_yaw: float = 0.0
    yaw: float = 0.0  # head yaw relative to the body
    pitch: float = 0.0  # positive looks down (a nod)
    roll: float = 0.0
    sway_x: float = 0.0
    breath: float = 0.0
    mouth_open: float = 0.0  # speech opening, added to the expression's base
    mouth_round: float = 0.2
    expression: str = "neutral"
    intensity: float = 1.0
    brow_raise: float = 0.0  # reaction brow raise, added to the expression
    smile_extra: float = 0.0  # reaction smile
    blink: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    gesture: str = "none"
    gesture_amount: float = 0.0
    gesture_phase: float = 0.0
    beat: float = 0.0


@dataclass
class Camera:
    """Where the head centre lands (pixels) and the scale (pixels per head radius)."""

    scale: float
    cx: float
    cy: float


@dataclass
class FaceParams:
    smile: float
    brow: float
    tilt: float
    eye_open: float
    mouth_open: float
    mouth_round: float
    blush: float
    gaze_x: float
    gaze_y: float


def face_params(pose: Pose) -> FaceParams:
    n = _EXPRESSION_FACE["neutral"]
    e = _EXPRESSION_FACE.get(pose.expression, n)
    k = pose.intensity
    v = [a + k * (b - a) for a, b in zip(n, e)]
    return FaceParams(
        smile=float(np.clip(v[0] + pose.smile_extra, -1, 1)),
        brow=v[1] + pose.brow_raise,
        tilt=v[2],
        eye_open=v[3] * (1.0 - pose.blink),
        mouth_open=float(np.clip(v[4] + pose.mouth_open, 0, 1.1)),
        mouth_round=v[5] * (1 - min(pose.mouth_open * 2, 1))
        + pose.mouth_round * min(pose.mouth_open * 2, 1),
        blush=v[6],
        gaze_x=v[7] + pose.gaze_x,
        gaze_y=v[8] + pose.gaze_y,
    )


_MOUTH_INSIDE = rgb((78, 14, 26))
_TEETH = rgb((236, 232, 222))
_EYE_WHITE = rgb((245, 245, 240))
_PUPIL = rgb((12, 12, 16))
_BLUSH = rgb((235, 110, 120))
_SHIRT = rgb((240, 240, 240))

# Gesture hand / elbow targets for the right arm (world units), left arm mirrored where used.
_REST = ((1.55, 4.6), (1.7, 3.2))


class CharacterRenderer:
    """Renders one identity; colours and proportions are precomputed once."""

    def __init__(self, identity: CharacterIdentity, height: int = 128, width: int = 128):
        self.id = identity
        self.canvas = Canvas(height, width)
        c = identity
        self.skin = rgb(c.skin)
        self.skin_dark = self.skin * 0.82
        self.hair = rgb(c.hair_color)
        self.brow = rgb(c.brow_color)
        self.iris = rgb(c.eye_color)
        self.lip = rgb(c.lip_color)
        self.cloth = rgb(c.clothing_color)
        self.cloth2 = rgb(c.clothing_color2)
        self.acc = rgb(c.accessory_color)

    # -- geometry -------------------------------------------------------------------------
    def subject_box(self, cam: Camera) -> tuple[float, float, float, float] | None:
        """Head-and-shoulders box in pixels, clipped to the frame; None if off the frame."""
        s, c = cam.scale, self.id
        half = max(c.shoulder_width, 1.3) * s
        box = (cam.cx - half, cam.cy - 1.3 * c.head_h * s, cam.cx + half, cam.cy + 4.5 * s)
        return _clip_box(box, self.canvas.w, self.canvas.h)

    def face_box(self, cam: Camera) -> tuple[float, float, float, float] | None:
        s, c = cam.scale, self.id
        box = (
            cam.cx - 1.05 * c.head_w * s,
            cam.cy - 1.15 * c.head_h * s,
            cam.cx + 1.05 * c.head_w * s,
            cam.cy + 1.05 * c.head_h * s,
        )
        return _clip_box(box, self.canvas.w, self.canvas.h)

    # -- drawing --------------------------------------------------------------------------
    def render(self, pose: Pose, cam: Camera, background: np.ndarray) -> np.ndarray:
        """Returns the canvas image (float32, 0..255); copy it if you keep it."""
        cv = self.canvas
        cv.set_background(background)
        s = cam.scale
        hx = cam.cx + pose.sway_x * s
        hy = cam.cy + pose.breath * 0.3 * s
        shrug = pose.gesture_amount if pose.gesture == "shrug" else 0.0
        yaw = math.radians(pose.body_yaw + pose.yaw)
        body_yaw = math.radians(pose.body_yaw)
        back = math.cos(yaw) < -0.3
        self._draw_body(cv, cam, pose, body_yaw, shrug)
        self._draw_hair_behind(cv, hx, hy, s, yaw, back)
        self._draw_head(cv, hx, hy, s, yaw, pose, back)
        self._draw_arms(cv, cam, pose, front=True)
        return cv.img

    def _draw_body(self, cv: Canvas, cam: Camera, pose: Pose, body_yaw: float, shrug: float):
        c, s = self.id, cam.scale
        x, y = cam.cx, cam.cy + pose.breath * 0.5 * s
        sw = c.shoulder_width * (0.72 + 0.28 * abs(math.cos(body_yaw))) * s
        self._draw_arms(cv, cam, pose, front=False)
        cv.ellipse(x, y + 1.3 * s, 0.33 * s, 0.6 * s, self.skin_dark)  # neck
        if c.clothing_style == "hoodie":
            cv.ellipse(x, y + 1.75 * s, 0.85 * s, 0.45 * s, self.cloth2)
        top = y + (4.35 - 0.25 * shrug) * s
        cv.ellipse(x, top, sw, 2.75 * s, self.cloth)
        front = math.cos(body_yaw) > 0
        if not front:
            # Seen from behind: the back collar seam and shoulder-blade shading.
            cv.ellipse(x, y + 1.8 * s, 0.55 * s, 0.16 * s, self.cloth * 0.7)
            cv.ellipse(x, y + 3.2 * s, 0.55 * sw, 0.9 * s, self.cloth * 0.88, alpha=0.6)
            return
        off = math.sin(body_yaw) * 0.5 * s
        if c.clothing_style == "stripes":
            for k in range(3):
                yy = top - (1.7 - 0.9 * k) * s
                half = sw * math.sqrt(max(0.0, 1 - ((yy - top) / (2.75 * s)) ** 2)) - 1
                cv.rect(x - half, yy - 0.15 * s, x + half, yy + 0.15 * s, self.cloth2)
        elif c.clothing_style == "suit":
            cv.ellipse(x + off, y + 2.6 * s, 0.32 * s, 1.1 * s, _SHIRT)
            cv.capsule(x + off, y + 1.9 * s, x + off, y + 3.2 * s, 0.1 * s, self.cloth2)
        elif c.clothing_style == "collar":
            cv.ellipse(x + off - 0.3 * s, y + 1.75 * s, 0.38 * s, 0.16 * s, self.cloth2, angle=0.5)
            cv.ellipse(x + off + 0.3 * s, y + 1.75 * s, 0.38 * s, 0.16 * s, self.cloth2, angle=-0.5)
        else:
            cv.ellipse(x + off, y + 1.7 * s, 0.34 * s, 0.2 * s, self.skin_dark)

    def _arm_points(self, pose: Pose, side: int):
        """(shoulder, elbow, hand) of one arm in world units relative to the head centre."""
        sw = self.id.shoulder_width
        a = pose.gesture_amount
        rest_hand, rest_elbow = _REST
        g, ph = pose.gesture, pose.gesture_phase
        hand, elbow = (rest_hand[0] * side, rest_hand[1]), (rest_elbow[0] * side, rest_elbow[1])
        tgt = None
        if g == "beat":
            tgt = ((0.85 * side, 3.7 - 0.5 * pose.beat), (1.6 * side, 4.3))
        elif g == "wave" and side == 1:
            tgt = ((1.95 + 0.35 * math.sin(ph * 2 * math.pi * 2.5), -0.3), (2.0, 1.3))
        elif g == "point" and side == 1:
            tgt = ((3.4, 1.2), (2.3, 1.9))
        elif g == "shrug":
            tgt = ((2.6 * side, 2.9), (1.9 * side, 3.3))
        elif g == "hand_to_chin" and side == 1:
            tgt = ((0.3, 1.1), (0.9, 3.4))
        if tgt is not None:
            hand = (hand[0] + a * (tgt[0][0] - hand[0]), hand[1] + a * (tgt[0][1] - hand[1]))
            elbow = (elbow[0] + a * (tgt[1][0] - elbow[0]), elbow[1] + a * (tgt[1][1] - elbow[1]))
        return (0.85 * sw * side, 2.0), elbow, hand

    def _draw_arms(self, cv: Canvas, cam: Camera, pose: Pose, front: bool) -> None:
        if pose.gesture == "none" or pose.gesture_amount <= 0.02:
            return
        # Raised hands (wave, chin) are drawn over the face; the rest under it.
        over_face = pose.gesture in ("wave", "hand_to_chin", "point")
        if front != over_face and pose.gesture not in ("beat", "shrug"):
            return
        if pose.gesture in ("beat", "shrug") and not front:
            return
        s = cam.scale
        for side in (1, -1):
            sh, el, ha = self._arm_points(pose, side)
            if ha == (_REST[0][0] * side, _REST[0][1]):
                continue
            p = [(cam.cx + s * px, cam.cy + s * py) for px, py in (sh, el, ha)]
            cv.capsule(*p[0], *p[1], 0.32 * s, self.cloth)
            cv.capsule(*p[1], *p[2], 0.26 * s, self.cloth)
            cv.ellipse(p[2][0], p[2][1], 0.3 * s, 0.3 * s, self.skin)
            if pose.gesture == "point" and side == 1:
                cv.capsule(
                    p[2][0], p[2][1], p[2][0] + 0.6 * s, p[2][1] - 0.1 * s, 0.09 * s, self.skin
                )

    def _draw_hair_behind(self, cv, hx, hy, s, yaw, back):
        c = self.id
        st, w, h = c.hair_style, c.head_w * s, c.head_h * s
        if st == "bald":
            return
        shift = -math.sin(yaw) * 0.15 * s
        if st == "long":
            cv.ellipse(hx + shift, hy + 0.55 * h, 1.25 * w, 1.55 * h, self.hair)
        elif st == "bob":
            cv.ellipse(hx + shift, hy + 0.1 * h, 1.2 * w, 1.08 * h, self.hair)
        elif st == "curly":
            for k in range(7):
                a = math.pi * (0.95 + k / 6 * 1.1)
                cv.ellipse(
                    hx + math.cos(a) * 1.0 * w,
                    hy + math.sin(a) * 0.95 * h - 0.1 * h,
                    0.42 * w,
                    0.42 * w,
                    self.hair,
                )
        elif st != "mohawk":
            cv.ellipse(hx + shift, hy - 0.15 * h, 1.1 * w, 0.98 * h, self.hair)
        if st == "ponytail":
            side = -1 if math.sin(yaw) > 0 else 1
            cv.capsule(
                hx + side * 0.9 * w * abs(math.sin(yaw)),
                hy - 0.4 * h,
                hx + side * 1.2 * w * abs(math.sin(yaw)) + shift,
                hy + 0.9 * h,
                0.25 * w,
                self.hair,
            )
        if st == "bun":
            cv.ellipse(hx + shift * 2, hy - 1.1 * h, 0.42 * w, 0.36 * w, self.hair)

    def _draw_head(self, cv, hx, hy, s, yaw, pose: Pose, back: bool):
        c = self.id
        w, h = c.head_w * s, c.head_h * s
        roll = math.radians(pose.roll)
        pitch = math.radians(pose.pitch)
        cr, sr = math.cos(roll), math.sin(roll)

        def at(phi: float, y: float, radius: float = 1.0):
            """Pixel position and foreshortening of a point at longitude phi, height y."""
            depth = math.cos(phi + yaw)
            xo = math.sin(phi + yaw) * w * radius
            yo = (y + math.sin(pitch) * 0.55 * depth) * h
            return hx + xo * cr - yo * sr, hy + xo * sr + yo * cr, depth

        # Ears behind the head at the sides; an ear turned towards the camera is drawn on it.
        ears = [at(side * math.pi / 2, 0.05) for side in (1, -1)]
        for ex, ey, d in ears:
            if -0.3 < d <= 0.25:
                self._ear(cv, ex, ey, w, h, roll, d)
        cv.ellipse(hx, hy, w, h, self.skin, angle=roll)
        jx, jy, _ = at(0.0, 0.55)
        cv.ellipse(jx, jy, w * (0.75 - 0.3 * c.jaw), h * (0.5 + 0.1 * c.jaw), self.skin, angle=roll)
        for ex, ey, d in ears:
            if d > 0.25:
                self._ear(cv, ex, ey, w, h, roll, d)
        if back:
            if c.hair_style != "bald":
                cv.ellipse(hx, hy - 0.05 * h, 1.04 * w, 1.02 * h, self.hair, angle=roll)
            else:
                cv.ellipse(hx, hy + 0.55 * h, 0.55 * w, 0.35 * h, self.skin_dark, alpha=0.5)
            self._draw_accessory_top(cv, hx, hy, w, h, roll, at)
            return
        f = self._face(cv, pose, w, h, s, roll, at)
        self._draw_hair_front(cv, w, h, roll, at)
        self._draw_accessory_top(cv, hx, hy, w, h, roll, at)
        if c.accessory == "glasses":
            for side in (1, -1):
                gx, gy, d = at(side * c.eye_spacing * 1.2, -0.1)
                if d > 0.15:
                    cv.ring(gx, gy, 0.24 * w * d, 0.17 * h, max(1.0, 0.06 * s), self.acc)
        return f

    def _ear(self, cv, ex, ey, w, h, roll, depth):
        cv.ellipse(
            ex, ey, 0.2 * w * (1 - 0.4 * max(depth, 0)), 0.28 * h, self.skin_dark, angle=roll
        )
        if self.id.accessory == "earrings":
            cv.ellipse(ex, ey + 0.33 * h, 0.08 * w, 0.08 * w, self.acc)

    def _face(self, cv, pose, w, h, s, roll, at):
        c, fp = self.id, face_params(pose)
        for side in (1, -1):
            bx, by, d = at(side * 0.45, 0.28)
            if fp.blush > 0.01 and d > 0.2:
                cv.ellipse(bx, by, 0.2 * w * d, 0.12 * h, _BLUSH, alpha=0.35 * fp.blush)
        for side in (1, -1):
            phi = side * c.eye_spacing * 1.2
            ex, ey, d = at(phi, -0.1)
            if d <= 0.15:
                continue
            rx, ry = 0.17 * c.eye_size * w * d, 0.12 * c.eye_size * h * max(fp.eye_open, 0.0)
            if ry < 0.08 * h * 0.3:
                cv.capsule(ex - rx, ey, ex + rx, ey, max(0.5, 0.03 * s), _PUPIL)
            else:
                cv.ellipse(ex, ey, rx, ry, _EYE_WHITE, angle=roll)
                ix = ex + fp.gaze_x * 0.07 * w * d
                iy = ey + fp.gaze_y * 0.04 * h
                ir = 0.085 * c.eye_size * w
                cv.ellipse(ix, iy, ir * d, min(ir, ry), self.iris)
                cv.ellipse(ix, iy, ir * 0.45 * d, min(ir * 0.45, ry), _PUPIL)
            bx, by, _ = at(phi, -0.36 - 0.12 * fp.brow)
            angle = roll + side * fp.tilt * 0.35
            cv.ellipse(bx, by, 0.19 * w * d, c.brow_thickness * h, self.brow, angle=angle)
        nx, ny, d = at(0.0, 0.17, 1.08)
        cv.ellipse(
            nx,
            ny,
            0.08 * c.nose_size * w * (0.5 + 0.5 * d) + 0.1 * w * (1 - d),
            0.1 * c.nose_size * h,
            self.skin_dark,
            angle=roll,
        )
        self._mouth(cv, fp, w, h, roll, at)
        return fp

    def _mouth(self, cv, fp: FaceParams, w, h, roll, at):
        mx, my, d = at(0.0, 0.52)
        if d <= 0.1:
            return
        c = self.id
        width = c.mouth_width * w * (1 + 0.25 * max(fp.smile, 0) - 0.35 * fp.mouth_round) * d
        opening = fp.mouth_open * 0.2 * h
        lip_h = 0.045 * h + opening
        cv.ellipse(mx, my, width, lip_h, self.lip, angle=roll)
        if opening > 0.02 * h:
            cv.ellipse(mx, my, width * 0.82, opening, _MOUTH_INSIDE, angle=roll)
            if fp.mouth_open > 0.3:
                cv.ellipse(mx, my - opening * 0.65, width * 0.6, opening * 0.3, _TEETH, angle=roll)
        elif abs(fp.smile) > 0.1:
            # Carving the lip ellipse from above (smile) or below (frown) bends it.
            sgn = -1 if fp.smile > 0 else 1
            cv.ellipse(
                mx,
                my + sgn * lip_h * 1.1,
                width * 0.95,
                lip_h * (0.6 + 0.5 * abs(fp.smile)),
                self.skin,
                angle=roll,
            )
        else:
            cv.capsule(
                mx - width * 0.8, my, mx + width * 0.8, my, max(0.5, 0.012 * h), _MOUTH_INSIDE
            )

    def _draw_hair_front(self, cv, w, h, roll, at):
        st = self.id.hair_style
        if st in ("bald", "curly"):
            if st == "curly":
                fx, fy, d = at(0.0, -0.85)
                cv.ellipse(fx, fy, 0.8 * w, 0.25 * h, self.hair, angle=roll)
            return
        if st == "mohawk":
            fx, fy, d = at(0.0, -1.05)
            cv.ellipse(fx, fy, 0.2 * w, 0.45 * h, self.hair, angle=roll)
            return
        fx, fy, d = at(0.0, -0.8)
        depth = 0.3 if st == "bob" else 0.26
        cv.ellipse(fx, fy, 0.92 * w, depth * h, self.hair, angle=roll)

    def _draw_accessory_top(self, cv, hx, hy, w, h, roll, at):
        acc = self.id.accessory
        if acc == "hat":
            fx, fy, _ = at(0.0, -0.9)
            cv.ellipse(fx, fy, 1.3 * w, 0.16 * h, self.acc, angle=roll)
            cv.ellipse(fx, fy - 0.3 * h, 0.8 * w, 0.4 * h, self.acc, angle=roll)
        elif acc == "headband":
            fx, fy, _ = at(0.0, -0.62)
            cv.ellipse(fx, fy, 0.98 * w, 0.09 * h, self.acc, angle=roll)


def _clip_box(box, width, height):
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return (round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1))


def reference_set(identity: CharacterIdentity, size: int = 128) -> dict[str, np.ndarray]:
    """1 global image, 4 body views and 8 faces, uint8 (H, W, 3) each, keyed
    `global`, `body/<view>`, `face/<expression>`."""
    r = CharacterRenderer(identity, size, size)
    bg = np.broadcast_to(np.float32([200, 205, 210]), (size, size, 3))
    out: dict[str, np.ndarray] = {}
    medium = Camera(scale=size / 7.5, cx=size / 2, cy=size * 0.36)
    close = Camera(scale=size / 3.6, cx=size / 2, cy=size * 0.47)
    # The global image is a relaxed three-quarter portrait, not a copy of a body view.
    half = Camera(scale=size / 5.5, cx=size / 2, cy=size * 0.4)
    out["global"] = _u8(
        r.render(Pose(body_yaw=-20, yaw=10, expression="smile", intensity=0.5), half, bg)
    )
    for view, yaw in VIEWS.items():
        out[f"body/{view}"] = _u8(r.render(Pose(body_yaw=yaw), medium, bg))
    for e in EXPRESSIONS:
        out[f"face/{e}"] = _u8(r.render(Pose(expression=e), close, bg))
    return out


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


REFERENCE_KEYS = ["global"] + [f"body/{v}" for v in VIEWS] + [f"face/{e}" for e in EXPRESSIONS]
