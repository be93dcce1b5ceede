"""Character identities: every look and voice drawn from (seed, index), so thousands are distinct.

Identity `index % 10 == 9` is held out (never in training shards made with `split="train"`),
which gives LPM-Bench-mini its unseen characters.
"""

from __future__ import annotations

import colorsys
import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np

HAIR_STYLES = ("short", "long", "bun", "curly", "bob", "ponytail", "mohawk", "bald")
CLOTHING_STYLES = ("tshirt", "collar", "hoodie", "suit", "stripes")
ACCESSORIES = ("none", "glasses", "hat", "earrings", "headband")
HELD_OUT_EVERY = 10

# espeak-ng voices: language variants x voice variants, with pitch and rate drawn per identity.
VOICE_LANGS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
VOICE_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Alex",
    "Andrea",
    "Annie",
    "belinda",
    "david",
    "ed",
    "linda",
    "Mike",
    "paul",
    "steph",
    "zac",
    "anika",
    "grandpa",
    "klatt",
    "klatt2",
    "klatt3",
    "aunty",
    "max",
    "john",
    "rob",
    "michel",
)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class VoiceSpec:
    """An espeak-ng voice: `name` is `lang+variant`; pitch 0-99, rate in words per minute."""

    name: str
    pitch: int
    rate: int

    @property
    def key(self) -> str:
        return f"{self.name}:{self.pitch}:{self.rate}"


@dataclass(frozen=True)
class CharacterIdentity:
    """One synthetic character: proportions in head units, colours as 0-255 RGB."""

    id: str
    index: int
    split: str  # "train" or "heldout"
    skin: RGB
    head_w: float
    head_h: float
    jaw: float  # 0 round chin .. 1 pointed chin
    hair_style: str
    hair_color: RGB
    eye_color: RGB
    eye_size: float
    eye_spacing: float
    brow_thickness: float
    brow_color: RGB
    nose_size: float
    mouth_width: float
    lip_color: RGB
    clothing_style: str
    clothing_color: RGB
    clothing_color2: RGB
    shoulder_width: float
    accessory: str
    accessory_color: RGB
    voice: VoiceSpec

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """A short appearance phrase for captions."""
        hair = "bald" if self.hair_style == "bald" else f"{self.hair_style}-haired"
        acc = "" if self.accessory == "none" else f" wearing {_accessory_phrase(self.accessory)}"
        return f"a {hair} character in a {self.clothing_style}{acc}"


def _accessory_phrase(acc: str) -> str:
    return {"glasses": "glasses", "hat": "a hat", "earrings": "earrings", "headband": "a headband"}[
        acc
    ]


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (round(r * 255), round(g * 255), round(b * 255))


def identity_id(index: int) -> str:
    return f"c{index:06d}"


def split_of(index: int) -> str:
    return "heldout" if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else "train"


def sample_identity(index: int, seed: int = 0) -> CharacterIdentity:
    """The identity number `index` of the population drawn from `seed` (pure function)."""
    rng = np.random.default_rng([seed, index, 0x1D])
    u = rng.uniform
    skin_tone = u(0.0, 1.0)
    skin = _hsv(u(0.03, 0.09), 0.25 + 0.45 * skin_tone, 0.97 - 0.6 * skin_tone)
    hair_hue = rng.choice([0.07, 0.08, 0.1, 0.12, 0.02, 0.0, 0.6, 0.8, 0.33])
    hair_color = _hsv(hair_hue, u(0.3, 0.9), u(0.08, 0.85))
    cloth_h = u(0, 1)
    voice = VoiceSpec(
        name=f"{rng.choice(VOICE_LANGS)}+{rng.choice(VOICE_VARIANTS)}",
        pitch=int(rng.integers(20, 80)),
        rate=int(rng.integers(140, 190)),
    )
    return CharacterIdentity(
        id=identity_id(index),
        index=index,
        split=split_of(index),
        skin=skin,
        head_w=float(round(u(0.85, 1.1), 3)),
        head_h=float(round(u(1.05, 1.3), 3)),
        jaw=float(round(u(0, 1), 3)),
        hair_style=str(rng.choice(HAIR_STYLES)),
        hair_color=hair_color,
        eye_color=_hsv(rng.choice([0.08, 0.3, 0.55, 0.6, 0.1]), u(0.4, 0.9), u(0.25, 0.7)),
        eye_size=float(round(u(0.8, 1.25), 3)),
        eye_spacing=float(round(u(0.32, 0.42), 3)),
        brow_thickness=float(round(u(0.05, 0.1), 3)),
        brow_color=tuple(int(c * 0.8) for c in hair_color),  # type: ignore[arg-type]
        nose_size=float(round(u(0.7, 1.3), 3)),
        mouth_width=float(round(u(0.24, 0.36), 3)),
        # Lips stay light enough that the open mouth interior is the darkest red in the face.
        lip_color=_hsv(u(0.95, 1.02), u(0.3, 0.55), u(0.6, 0.85)),
        clothing_style=str(rng.choice(CLOTHING_STYLES)),
        clothing_color=_hsv(cloth_h, u(0.3, 0.9), u(0.3, 0.95)),
        clothing_color2=_hsv(cloth_h + u(0.2, 0.8), u(0.2, 0.8), u(0.3, 0.95)),
        shoulder_width=float(round(u(1.5, 2.0), 3)),
        accessory=str(rng.choice(ACCESSORIES, p=[0.4, 0.2, 0.15, 0.1, 0.15])),
        accessory_color=_hsv(u(0, 1), u(0.3, 1), u(0.1, 0.9)),
        voice=voice,
    )


def identity_fingerprint(identity: CharacterIdentity) -> str:
    """A hash of the look (not the id): two indices with the same fingerprint look alike."""
    d = identity.to_dict()
    for k in ("id", "index", "split", "voice"):
        d.pop(k)
    return hashlib.sha1(repr(sorted(d.items())).encode()).hexdigest()[:16]


# The face's proportions and their ranges in `sample_identity`: what tells two characters of
# the same colours apart.
FACE_SHAPE = {
    "head_w": (0.85, 1.1),
    "head_h": (1.05, 1.3),
    "jaw": (0.0, 1.0),
    "eye_size": (0.8, 1.25),
    "eye_spacing": (0.32, 0.42),
    "brow_thickness": (0.05, 0.1),
    "nose_size": (0.7, 1.3),
    "mouth_width": (0.24, 0.36),
}
TWIN_KINDS = ("face", "palette")


def twin_identity(identity: CharacterIdentity, kind: str, seed: int = 0) -> CharacterIdentity:
    """Another character with `identity`'s colours: a hard negative for an identity judge.

    - "face": everything kept (colours, hair style, clothes, accessory, voice) except the
      face's proportions, each redrawn at least 40% of its range away from the original;
    - "palette": the same colours only: the face redrawn as above and another hair style,
      clothing style and accessory.
    Same index and voice, so a script drawn for `identity` plays for its twin too."""
    if kind not in TWIN_KINDS:
        raise ValueError(f"twin kind must be one of {TWIN_KINDS}, got {kind!r}")
    rng = np.random.default_rng([seed, identity.index, 0x7A, TWIN_KINDS.index(kind)])
    change: dict = {}
    for name, (lo, hi) in FACE_SHAPE.items():
        old, gap = getattr(identity, name), 0.4 * (hi - lo)
        # The values at least `gap` away on either side, drawn in proportion to their room.
        below, above = max(0.0, old - gap - lo), max(0.0, hi - old - gap)
        u = rng.uniform(0, below + above)
        change[name] = float(round(lo + u if u < below else old + gap + (u - below), 3))
    if kind == "palette":

        def other(options: tuple[str, ...], current: str) -> str:
            return str(rng.choice([o for o in options if o != current]))

        change["hair_style"] = other(HAIR_STYLES, identity.hair_style)
        change["clothing_style"] = other(CLOTHING_STYLES, identity.clothing_style)
        change["accessory"] = other(ACCESSORIES, identity.accessory)
    return replace(identity, id=f"{identity.id}-{kind}-twin", **change)
