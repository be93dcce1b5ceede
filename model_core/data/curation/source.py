"""Raw recordings as the curation stages see them: decoded frames, both voice tracks, and
the performer's ground truth and metadata when they are there.

A recording is `NAME.mp4` with one video stream and exactly two audio streams (character
voice, then partner voice); `NAME.gt.jsonl` and `NAME.meta.json` beside it are optional for
curation and used for evaluation and captions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000


class RecordingError(Exception):
    """A recording that cannot be curated; the message names the file and the problem."""


@dataclass
class RawRecording:
    name: str
    path: str  # where it came from, for messages
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float
    character: np.ndarray  # float32 mono 16 kHz
    partner: np.ndarray
    gt: list[dict] | None = None
    meta: dict | None = None
    identity: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


def _decode_audio(container, stream, n_samples: int) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    out = np.zeros(n_samples, np.float32)
    for frame in container.decode(stream):
        start = (
            int(round(float(frame.pts * frame.time_base) * SAMPLE_RATE))
            if frame.pts is not None
            else None
        )
        for rf in resampler.resample(frame):
            pcm = rf.to_ndarray().reshape(-1)
            if start is None:
                continue
            a, b = max(start, 0), min(start + len(pcm), n_samples)
            if b > a:
                out[a:b] = pcm[a - start : b - start]
            start += len(pcm)
    return out


def load_recording(mp4: str | Path, name: str | None = None) -> RawRecording:
    """Decode an MP4 (and read its sidecars). Raises RecordingError naming the file."""
    mp4 = Path(mp4)
    name = name or mp4.name[: -len(".mp4")]
    try:
        container = av.open(str(mp4))
    except Exception as e:
        raise RecordingError(
            f"{mp4}: cannot open video: corrupt or truncated file ({e.__class__.__name__})"
        ) from e
    with container:
        vstreams = list(container.streams.video)
        astreams = list(container.streams.audio)
        if not vstreams:
            raise RecordingError(f"{mp4}: no video stream")
        if len(astreams) != 2:
            raise RecordingError(
                f"{mp4}: expected 2 audio tracks (character voice, partner voice), found {len(astreams)}"
            )
        fps = float(vstreams[0].average_rate or 24)
        frames = []
        try:
            for fr in container.decode(vstreams[0]):
                frames.append(fr.to_ndarray(format="rgb24"))
        except Exception as e:
            raise RecordingError(
                f"{mp4}: corrupt or truncated video after {len(frames)} frames ({e})"
            ) from e
        if not frames:
            raise RecordingError(f"{mp4}: no decodable video frames (corrupt or truncated)")
        n_samples = int(round(len(frames) / fps * SAMPLE_RATE))
        try:
            tracks = []
            for s in astreams:
                container.seek(0)
                tracks.append(_decode_audio(container, s, n_samples))
        except Exception as e:
            raise RecordingError(f"{mp4}: corrupt audio ({e})") from e
    gt = meta = None
    gt_path, meta_path = mp4.with_name(f"{name}.gt.jsonl"), mp4.with_name(f"{name}.meta.json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
    if gt_path.exists():
        gt = [json.loads(line) for line in gt_path.read_text().splitlines() if line.strip()]
        if meta and len(gt) != meta.get("frames", len(gt)):
            gt = None  # a torn ground-truth file is not trusted
    if meta and meta.get("frames") and len(frames) < meta["frames"]:
        raise RecordingError(
            f"{mp4}: truncated video: {len(frames)} of {meta['frames']} frames decodable"
        )
    identity = (meta or {}).get("identity", {}).get("id", "") or name
    return RawRecording(
        name, str(mp4), np.stack(frames), fps, tracks[0], tracks[1], gt, meta, identity
    )
