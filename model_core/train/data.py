"""Training data as the trainer sees it: clips of whole seconds with both voice tracks, a
caption and the identity's reference set, from any `ClipSource`.

Sources:
- `RecordingClipSource`: a `lpm data synth` folder (`raw/*.mp4` + ground truth,
  `identities/*.refs.npz`); windows that cross a cut or dissolve, contain a planted defect or
  lose the subject are skipped, which is what curation would drop.
- `ShardClipSource`: the data engineer's curated shards (`model_core.data.shards`), when present.
- `SyntheticClipSource`: smooth moving blobs with a tone, tiny and in memory (tests).

Every DiT stage works on VAE latents, so `LatentCache.build` encodes each window once with
the trained VAE (the clip is primed with the global reference image as latent frame 0,
exactly as an Online stream is) and the stages sample batches from memory.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from model_core.config import LPMConfig
from model_core.references import EncodedReferences, ReferenceImages

AUDIO_CONTEXT_SECONDS = 3  # left audio context: the listening window (2 s) + encoder field (1 s)


@dataclass
class TrainClip:
    frames: np.ndarray  # uint8 (T, H, W, 3), T = whole seconds of video
    speak: np.ndarray  # float32 pcm: AUDIO_CONTEXT_SECONDS of left context, then the clip's
    listen: np.ndarray
    caption: str
    identity: str
    # (T, 4) float32 face box (x0, y0, x1, y1) per frame in the clip's pixels, NaN where the
    # ground truth has none; None when the source has no ground truth at all.
    face_boxes: np.ndarray | None = None
    # (T,) float32 ground-truth mouth opening per frame (the performer's `mouth_open`), NaN
    # where unknown; None when the source has no ground truth.
    mouth_open: np.ndarray | None = None


def face_boxes(gt_boxes: list | None) -> np.ndarray | None:
    """Per-frame ground-truth face boxes (lists or None) -> (T, 4) float32 with NaN rows."""
    if not gt_boxes:
        return None
    return np.array([b if b is not None else [np.nan] * 4 for b in gt_boxes], np.float32)


def mouth_openings(values: list | None) -> np.ndarray | None:
    """Per-frame ground-truth mouth openings (numbers or None) -> (T,) float32 with NaNs."""
    if not values:
        return None
    return np.array([np.nan if v is None else float(v) for v in values], np.float32)


class ClipSource(Protocol):
    def windows(self, seconds: int) -> list[tuple[int, int]]:
        """(recording index, first frame) of every usable window of `seconds`."""

    def clip(self, window: tuple[int, int], seconds: int) -> TrainClip: ...

    def references(self, identity: str) -> ReferenceImages: ...


def _with_context(pcm: np.ndarray, start: int, stop: int, sr: int) -> np.ndarray:
    """pcm[start - context : stop], zero-padded before the recording begins."""
    ctx = AUDIO_CONTEXT_SECONDS * sr
    a = start - ctx
    out = pcm[max(a, 0) : stop].astype(np.float32)
    return np.pad(out, (max(-a, 0), stop - start + ctx - max(-a, 0) - len(out)))


def caption_from_ground_truth(gt: list[dict]) -> str:
    """A short caption from the performer's per-frame truth (what curation's captioner says)."""
    states = [g.get("state", "silent") for g in gt]
    state = max(set(states), key=states.count)
    exprs = [g.get("expression", "neutral") for g in gt]
    expr = max(set(exprs), key=exprs.count)
    gestures = {g.get("gesture") for g in gt} - {None, "none", ""}
    words = {"speaking": "speaks", "listening": "listens", "silent": "waits quietly"}
    text = f"a {expr} character {words.get(state, state)}"
    return text + (f" and {sorted(gestures)[0].replace('_', ' ')}s" if gestures else "")


class RecordingClipSource:
    """Windows of raw performer recordings, skipping what curation would drop."""

    def __init__(
        self,
        root: str | Path,
        max_recordings: int | None = None,
        fps: int = 24,
        sample_rate: int = 16000,
    ):
        from model_core.data.curation.source import load_recording

        self.root, self.fps, self.sr = Path(root), fps, sample_rate
        paths = sorted((self.root / "raw").glob("*.mp4"))[:max_recordings]
        if not paths:
            raise FileNotFoundError(f"{self.root}: no raw/*.mp4 recordings (run `lpm data synth`)")
        self.recordings = [load_recording(p) for p in paths]
        self._refs: dict[str, ReferenceImages] = {}

    def _usable(self, gt: list[dict] | None, a: int, b: int) -> bool:
        if gt is None:
            return True
        win = gt[a:b]
        return (
            all(
                g.get("visible", True)
                and not g.get("defects")
                and (g.get("transition") is None or i == 0)
                for i, g in enumerate(win)
            )
            and len({g.get("shot") for g in win}) == 1
        )

    def windows(self, seconds: int) -> list[tuple[int, int]]:
        n = seconds * self.fps
        out = []
        for r, rec in enumerate(self.recordings):
            for start in range(0, rec.num_frames - n + 1, self.fps // 2):
                if self._usable(rec.gt, start, start + n):
                    out.append((r, start))
        return out

    def clip(self, window: tuple[int, int], seconds: int) -> TrainClip:
        r, start = window
        rec = self.recordings[r]
        stop = start + seconds * self.fps
        a, b = start * self.sr // self.fps, stop * self.sr // self.fps
        caption = caption_from_ground_truth(rec.gt[start:stop]) if rec.gt else ""
        gt = rec.gt[start:stop] if rec.gt else None
        return TrainClip(
            rec.frames[start:stop],
            _with_context(rec.character, a, b, self.sr),
            _with_context(rec.partner, a, b, self.sr),
            caption,
            rec.identity,
            face_boxes([g.get("face_box") for g in gt]) if gt else None,
            mouth_openings([g.get("mouth_open") for g in gt]) if gt else None,
        )

    def references(self, identity: str) -> ReferenceImages:
        if identity not in self._refs:
            z = np.load(self.root / "identities" / f"{identity}.refs.npz")
            body = {k[6:]: z[k] for k in z.files if k.startswith("body__")}
            face = {k[6:]: z[k] for k in z.files if k.startswith("face__")}
            self._refs[identity] = ReferenceImages(z["global"], body, face)
        return self._refs[identity]


class SyntheticClipSource:
    """Smooth coloured blobs whose size follows a tone's loudness: tiny, deterministic, for
    tests and smoke runs (it has a learnable audio -> motion relation)."""

    def __init__(self, cfg: LPMConfig, identities: int = 2, seconds_each: int = 3, seed: int = 0):
        self.cfg, self.seconds_each = cfg, seconds_each
        rng = np.random.default_rng(seed)
        self.colors = rng.uniform(40, 220, size=(identities, 2, 3))

    def _frame(self, ident: int, t: float, loud: float) -> np.ndarray:
        h, w = self.cfg.video.height, self.cfg.video.width
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        cx, cy = 0.5 + 0.15 * math.sin(t * 2.0), 0.45
        rad = 0.15 + 0.15 * loud
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad**2))[..., None]
        bg, fg = self.colors[ident]
        return (bg * (1 - blob) + fg * blob).astype(np.uint8)

    def _loudness(self, ident: int, t: np.ndarray) -> np.ndarray:
        return 0.5 + 0.5 * np.sin(2 * math.pi * (0.7 + 0.3 * ident) * t)

    def windows(self, seconds: int) -> list[tuple[int, int]]:
        fps = self.cfg.video.fps
        n = len(self.colors)
        return [(i, s * fps) for i in range(n) for s in range(self.seconds_each - seconds + 1)]

    def clip(self, window: tuple[int, int], seconds: int) -> TrainClip:
        ident, start = window
        fps, sr = self.cfg.video.fps, self.cfg.audio.sample_rate
        t = (start + np.arange(seconds * fps)) / fps
        loud = self._loudness(ident, t)
        frames = np.stack([self._frame(ident, ti, li) for ti, li in zip(t, loud, strict=True)])
        ts = (start * sr // fps + np.arange(-AUDIO_CONTEXT_SECONDS * sr, seconds * sr)) / sr
        env = self._loudness(ident, ts) * (ts >= 0)
        speak = (0.5 * env * np.sin(2 * math.pi * 220 * ts)).astype(np.float32)
        listen = (0.2 * np.sin(2 * math.pi * 330 * ts) * (ts >= 0)).astype(np.float32)
        h, w = self.cfg.video.height, self.cfg.video.width
        cx = (0.5 + 0.15 * np.sin(t * 2.0)) * w
        top, bottom = np.full_like(cx, 0.25 * h), np.full_like(cx, 0.65 * h)
        face = np.stack([cx - 0.2 * w, top, cx + 0.2 * w, bottom], 1)  # the blob is the face
        return TrainClip(
            frames,
            speak,
            listen,
            f"identity {ident} hums",
            f"id{ident}",
            face.astype(np.float32),
            loud.astype(np.float32),  # the blob is the mouth too: it opens with the tone
        )

    def references(self, identity: str) -> ReferenceImages:
        i = int(identity[2:])
        img = self._frame(i, 0.0, 0.5)
        return ReferenceImages(img, {"front": img}, {"neutral": img})


def open_clip_source(
    data: str | Path, cfg: LPMConfig, max_recordings: int | None = None
) -> ClipSource:
    """A curated shard folder/S3 prefix (data engineer's format) or a raw synth folder."""
    text = str(data)
    if text == "synthetic":
        return SyntheticClipSource(cfg)
    try:
        from model_core.train.shard_source import ShardClipSource, is_shard_store
    except ImportError:  # the shard loader is not there yet
        is_shard_store = None
    if is_shard_store is not None and is_shard_store(text):
        return ShardClipSource(text, cfg)
    if text.startswith("s3://"):
        raise FileNotFoundError(f"{text}: not a curated shard store")
    return RecordingClipSource(text, max_recordings, cfg.video.fps, cfg.audio.sample_rate)


# -- pixel batches (VAE stage) ------------------------------------------------------------------
def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1


@dataclass
class FrameBatch:
    """Pixel clips with what a stage asked for beside them (see `FrameBatches`)."""

    video: torch.Tensor  # (B, 3, T, H, W) in [-1, 1]
    pcm: torch.Tensor | None = None  # (B, S) the speaking track
    mouth: torch.Tensor | None = None  # (B, T, 4) mouth region per frame, pixels
    mouth_open: torch.Tensor | None = None  # (B, T) ground-truth mouth opening, NaN unknown


class FrameBatches:
    """Random (1+4k)-frame windows for the VAE; clips are decoded once and kept in memory."""

    def __init__(
        self,
        source: ClipSource,
        frames: int,
        batch: int,
        max_windows: int = 64,
        seed: int = 0,
        audio: tuple[int, int] | None = None,
        mouth: bool = False,
        mouth_open: bool = False,
    ):
        """Batches are video tensors (B, 3, T, H, W), or `FrameBatch`es when `audio` or `mouth`
        is asked for. `audio` = (sample rate, fps) adds `pcm` (B, S): the speaking track
        ending with the crop's last frame, with `audio_lead` samples of what came before (the
        decoder's audio window reaches back from each frame's end). `mouth` adds each frame's
        mouth region in pixels (B, T, 4), from the clips' face boxes (an error without them);
        `mouth_open` each frame's ground-truth mouth opening (B, T)."""
        seconds = max(1, math.ceil(frames / 24))  # windows long enough for one crop
        wins = source.windows(seconds)
        if not wins:
            raise ValueError(f"no usable {seconds}-second windows in the data for {frames} frames")
        pick = np.random.default_rng(seed).permutation(len(wins))[:max_windows]
        clips = [source.clip(wins[i], seconds) for i in sorted(pick)]
        self.clips = [c.frames for c in clips]
        self.audio = audio
        self.speak = [c.speak for c in clips] if audio else None
        self.mouth = None
        if mouth:
            if any(c.face_boxes is None for c in clips):
                raise ValueError("mouth regions need face boxes in the data's ground truth")
            self.mouth = [torch.from_numpy(mouth_boxes(c.face_boxes, 1, 1)) for c in clips]
        self.openings = None
        if mouth_open:
            if any(c.mouth_open is None for c in clips):
                raise ValueError("mouth openings need the performer's ground truth in the data")
            self.openings = [torch.from_numpy(c.mouth_open) for c in clips]
        self.frames, self.batch = frames, batch
        self.generator = torch.Generator().manual_seed(seed)

    audio_lead = 1024

    def _pcm(self, i: int, first: int) -> torch.Tensor:
        sr, fps = self.audio
        speak = self.speak[i]
        end = AUDIO_CONTEXT_SECONDS * sr + round((first + self.frames) * sr / fps)
        n = math.ceil(self.frames * sr / fps) + self.audio_lead
        pcm = speak[max(0, end - n) : end]
        pcm = np.pad(pcm, (n - len(pcm), 0)) if len(pcm) < n else pcm
        return torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32))

    def next(self) -> torch.Tensor | FrameBatch:
        out, pcm, mouth, opening = [], [], [], []
        for _ in range(self.batch):
            i = int(torch.randint(len(self.clips), (1,), generator=self.generator))
            clip = self.clips[i]
            s = int(torch.randint(clip.shape[0] - self.frames + 1, (1,), generator=self.generator))
            out.append(video_tensor(clip[s : s + self.frames]))
            if self.speak is not None:
                pcm.append(self._pcm(i, s))
            if self.mouth is not None:
                mouth.append(self.mouth[i][s : s + self.frames])
            if self.openings is not None:
                opening.append(self.openings[i][s : s + self.frames])
        if self.speak is None and self.mouth is None and self.openings is None:
            return torch.stack(out)
        return FrameBatch(
            torch.stack(out),
            torch.stack(pcm) if pcm else None,
            torch.stack(mouth) if mouth else None,
            torch.stack(opening) if opening else None,
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


# -- latent batches (every DiT stage) ---------------------------------------------------------
@dataclass
class LatentBatch:
    x0: torch.Tensor  # (B, z, F, h, w) clean latents of the clip
    speak: torch.Tensor  # (B, N) pcm with AUDIO_CONTEXT_SECONDS of left context
    listen: torch.Tensor
    captions: list[str]
    refs: EncodedReferences  # batched latents (B, z, 1, h, w); the same views for every sample
    identities: list[str] = field(default_factory=list)
    ref_images: list[ReferenceImages] = field(default_factory=list)  # for judges
    # (B, F, 4) mouth region per latent frame in latent-grid units (x0, y0, x1, y1), NaN where
    # unknown; None when the data has no face boxes. See `mouth_boxes` and `mouth_weights`.
    mouth: torch.Tensor | None = None
    # (B, z, 1, h, w): the window's first frame encoded alone, a picture framed like the
    # footage (what the `framed_global` option gives as the global reference); None in a
    # cache built before pictures were kept.
    picture: torch.Tensor | None = None
    # (B, F, temporal_factor) the ground truth's mouth opening at each latent frame's video
    # frames, NaN where unknown; None in a cache built without it.
    mouth_open: torch.Tensor | None = None
    # the cache's window of each sample (`LatentCache.batch(index)` gives the batch again)
    index: list[int] | None = None

    @property
    def size(self) -> int:
        return self.x0.shape[0]


# Where the mouth lies in the performer's face box, as fractions of its width and height
# (x0, y0, x1, y1): the box spans the head from above the hair to below the chin and the mouth
# sits about three quarters of the way down. A turned head carries the mouth to the box's
# side, so the band spans nearly its whole width.
MOUTH_IN_FACE = (0.04, 0.58, 0.96, 0.92)


def mouth_boxes(boxes: np.ndarray, temporal_factor: int, spatial_factor: int) -> np.ndarray:
    """Per-frame face boxes (T, 4) in pixels, NaN rows where unknown -> the mouth region of
    each latent frame (T // temporal_factor, 4) in latent-grid units: the union over the
    latent frame's video frames (NaN when none of them has a box)."""
    fx0, fy0, fx1, fy1 = boxes.T
    fw, fh = fx1 - fx0, fy1 - fy0
    a, b, c, d = MOUTH_IN_FACE
    m = np.stack([fx0 + a * fw, fy0 + b * fh, fx0 + c * fw, fy0 + d * fh], 1) / spatial_factor
    m = m[: len(m) // temporal_factor * temporal_factor].reshape(-1, temporal_factor, 4)
    with warnings.catch_warnings():  # a latent frame without any box stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(m[:, :, :2], axis=1), np.nanmax(m[:, :, 2:], axis=1)
    return np.concatenate([lo, hi], 1).astype(np.float32)


def frame_mouth_boxes(mouth: torch.Tensor, temporal_factor: int, spatial_factor: int):
    """Mouth regions per latent frame in latent cells (B, F, 4) -> per video frame in pixels
    (B, F * temporal_factor, 4): each latent frame's region for each of its frames."""
    return (mouth * spatial_factor).repeat_interleave(temporal_factor, dim=1)


def mouth_cover(mouth: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, F, 4) mouth regions (`LatentBatch.mouth`; pixels for `FrameBatch.mouth`) -> the
    share of each cell of an (h, w) grid inside its frame's region, (B, 1, F, h, w) in [0, 1];
    an unknown (NaN) region covers nothing."""
    h, w = shape
    m = torch.nan_to_num(mouth.float(), nan=0.0)
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    cover_x = (torch.minimum(xs + 1, m[..., 2:3]) - torch.maximum(xs, m[..., 0:1])).clamp(0, 1)
    cover_y = (torch.minimum(ys + 1, m[..., 3:4]) - torch.maximum(ys, m[..., 1:2])).clamp(0, 1)
    return (cover_y[..., :, None] * cover_x[..., None, :])[:, None]


def mouth_weights(
    mouth: torch.Tensor | None, shape: tuple[int, int], strength: float
) -> torch.Tensor | None:
    """Loss weights (B, 1, F, h, w) = 1 + strength * `mouth_cover`: a talking head's mouth
    is a few cells of a mostly still frame, and an unweighted loss never learns what the voice
    does to it. None when there is no mouth region or `strength` is 0."""
    if mouth is None or strength <= 0:
        return None
    return 1.0 + strength * mouth_cover(mouth, shape)


PICTURE_KINDS = ("first", "rest")


def picture_frame(opening: np.ndarray | None, kind: str) -> int:
    """Which frame of a window becomes its framed picture: the first, or for "rest" the most
    closed-mouth one (the first when the opening is unknown)."""
    if kind == "rest" and opening is not None and not np.isnan(opening).all():
        return int(np.nanargmin(opening))
    return 0


def latent_openings(opening: np.ndarray | None, frames: int, temporal_factor: int) -> np.ndarray:
    """Per-frame mouth openings (T,) -> (T // temporal_factor, temporal_factor), the video
    frames of each latent frame in order; NaN where unknown (all NaN without an opening)."""
    n = frames // temporal_factor
    if opening is None:
        return np.full((n, temporal_factor), np.nan, np.float32)
    return np.asarray(opening[: n * temporal_factor], np.float32).reshape(n, temporal_factor)


@dataclass
class LatentCache:
    """Encoded windows of `seconds` seconds plus every identity's encoded references."""

    latents: torch.Tensor  # (N, z, F, h, w) float16
    speak: torch.Tensor  # (N, samples) float16
    listen: torch.Tensor
    captions: list[str]
    identities: list[str]
    refs: dict[str, EncodedReferences]
    ref_images: dict[str, ReferenceImages]
    seconds: int
    vae_version: str = ""
    mouth: torch.Tensor | None = None  # (N, F, 4) float32, see `LatentBatch.mouth`
    pictures: torch.Tensor | None = None  # (N, z, 1, h, w) float16, see `LatentBatch.picture`
    mouth_open: torch.Tensor | None = None  # (N, F, tf) float32, see `LatentBatch.mouth_open`
    # Which frame of the window `pictures` holds: "first", or "rest" (the window's most
    # closed-mouth frame: a picture whose mouth says nothing about the window's speech).
    picture_kind: str = "first"
    # how many windows the cache was asked for (it holds fewer where the data has fewer);
    # caches from before this was kept were all asked for 256
    max_windows: int = 256

    def __len__(self) -> int:
        return self.latents.shape[0]

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model,
        source: ClipSource,
        seconds: int,
        max_windows: int = 256,
        seed: int = 0,
        vae_version: str = "",
        progress=None,
        picture: str = "first",
    ) -> LatentCache:
        from model_core.pipeline import LPMPipeline, image_to_tensor

        if picture not in PICTURE_KINDS:
            raise ValueError(f"picture must be one of {', '.join(PICTURE_KINDS)}, got {picture!r}")
        cfg = model.cfg
        pipe = LPMPipeline(model, vae_version or "training")
        wins = source.windows(seconds)
        if not wins:
            raise ValueError(f"no usable {seconds}-second windows in the data")
        pick = sorted(np.random.default_rng(seed).permutation(len(wins))[:max_windows])
        lat, spk, lis, caps, ids, mouth, pics, opens = [], [], [], [], [], [], [], []
        refs, images = {}, {}
        tf, sf = cfg.vae.temporal_factor, cfg.vae.spatial_factor
        size = (cfg.video.height, cfg.video.width)
        for n, i in enumerate(pick):
            clip = source.clip(wins[i], seconds)
            if clip.identity not in refs:
                images[clip.identity] = source.references(clip.identity)
                refs[clip.identity] = pipe.encode_references(
                    images[clip.identity], allow_custom_faces=True
                )
            prime = image_to_tensor(images[clip.identity].global_image, size)[:, :, None]
            video = torch.cat([prime, video_tensor(clip.frames)[None]], dim=2)
            lat.append(model.vae.encode(video)[0, :, 1:].half())
            j = picture_frame(clip.mouth_open, picture)
            pics.append(model.vae.encode(video[:, :, 1 + j : 2 + j])[0].half())
            opens.append(torch.from_numpy(latent_openings(clip.mouth_open, len(clip.frames), tf)))
            spk.append(torch.from_numpy(clip.speak).half())
            lis.append(torch.from_numpy(clip.listen).half())
            caps.append(clip.caption)
            ids.append(clip.identity)
            boxes = clip.face_boxes
            if boxes is None:
                boxes = np.full((len(clip.frames), 4), np.nan, np.float32)
            mouth.append(torch.from_numpy(mouth_boxes(boxes, tf, sf)))
            if progress:
                progress(n + 1, len(pick))
        return cls(
            torch.stack(lat),
            torch.stack(spk),
            torch.stack(lis),
            caps,
            ids,
            refs,
            images,
            seconds,
            vae_version,
            torch.stack(mouth) if any(not m.isnan().all() for m in mouth) else None,
            torch.stack(pics),
            torch.stack(opens) if any(not o.isnan().all() for o in opens) else None,
            picture,
            max_windows,
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.part")
        blob = {
            k: getattr(self, k)
            for k in (
                "latents",
                "speak",
                "listen",
                "captions",
                "identities",
                "seconds",
                "vae_version",
                "mouth",
                "pictures",
                "mouth_open",
                "picture_kind",
                "max_windows",
            )
        }
        blob["refs"] = {k: v.to_bytes() for k, v in self.refs.items()}
        blob["ref_images"] = {
            k: {"global": v.global_image, "body": v.body, "face": v.face}
            for k, v in self.ref_images.items()
        }
        torch.save(blob, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> LatentCache:
        blob = torch.load(path, weights_only=False)
        blob["refs"] = {k: EncodedReferences.from_bytes(v) for k, v in blob["refs"].items()}
        blob["ref_images"] = {
            k: ReferenceImages(v["global"], v["body"], v["face"])
            for k, v in blob["ref_images"].items()
        }
        return cls(**blob)

    def batch(self, index: list[int]) -> LatentBatch:
        ids = [self.identities[i] for i in index]
        encs = [self.refs[i] for i in ids]
        body = set.intersection(*(set(e.body) for e in encs))
        face = set.intersection(*(set(e.face) for e in encs))
        refs = EncodedReferences(
            torch.cat([e.global_latent for e in encs]),
            {k: torch.cat([e.body[k] for e in encs]) for k in sorted(body)},
            {k: torch.cat([e.face[k] for e in encs]) for k in sorted(face)},
        )
        return LatentBatch(
            self.latents[index].float(),
            self.speak[index].float(),
            self.listen[index].float(),
            [self.captions[i] for i in index],
            refs,
            ids,
            [self.ref_images[i] for i in ids],
            None if self.mouth is None else self.mouth[index],
            None if self.pictures is None else self.pictures[index].float(),
            None if self.mouth_open is None else self.mouth_open[index],
            list(index),
        )


class LatentBatches:
    """Random batches from a `LatentCache`, reproducible from the generator state."""

    def __init__(self, cache: LatentCache, batch: int, seed: int = 0):
        self.cache, self.batch = cache, batch
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> LatentBatch:
        idx = torch.randint(len(self.cache), (self.batch,), generator=self.generator).tolist()
        return self.cache.batch(idx)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def describe(cache: LatentCache) -> str:
    return json.dumps(
        {"windows": len(cache), "seconds": cache.seconds, "identities": len(cache.refs)}
    )
