"""Curated shards (`model_core.data.shards`, written by `lpm data curate`) as a `ClipSource`.

Clips are decoded once and kept in memory (the tiny recipe's few minutes of footage fit);
windows of whole seconds are cut from each clip at half-second strides, and the audio's left
context comes from the same clip (zeros before its start).
"""

from __future__ import annotations

from pathlib import Path

from model_core.config import LPMConfig
from model_core.data.shards import BODY_VIEWS, FACE_LABELS, ShardDataset, list_shards
from model_core.data.storage import StoreError, open_store
from model_core.references import ReferenceImages
from model_core.train.data import TrainClip, _with_context, face_boxes, mouth_openings


def is_shard_store(url: str | Path) -> bool:
    try:
        return bool(list_shards(open_store(str(url))))
    except (StoreError, OSError, ValueError):
        return False


class ShardClipSource:
    def __init__(self, url: str, cfg: LPMConfig, max_frames: int = 12_000, split: str = "train"):
        self.fps, self.sr = cfg.video.fps, cfg.audio.sample_rate
        self.clips: list[dict] = []
        self.refs: dict[str, ReferenceImages] = {}
        frames = 0
        for sample in ShardDataset(url, split=split):
            meta = sample["meta"]
            ident = str(meta.get("identity", sample["key"]))
            if ident not in self.refs:
                r = sample["refs"]
                self.refs[ident] = ReferenceImages(
                    r["global"],
                    {v: r["body"][i] for i, v in enumerate(BODY_VIEWS) if i < len(r["body"])},
                    {f: r["face"][i] for i, f in enumerate(FACE_LABELS) if i < len(r["face"])},
                )
            self.clips.append(
                {
                    "frames": sample["frames"],
                    "character": sample["character"],
                    "partner": sample["partner"],
                    "caption": meta.get("caption", ""),
                    "identity": ident,
                    "face_boxes": face_boxes(meta.get("gt", {}).get("face_box")),
                    "mouth_open": mouth_openings(meta.get("gt", {}).get("mouth_open")),
                }
            )
            frames += len(sample["frames"])
            if frames >= max_frames:
                break
        if not self.clips:
            raise FileNotFoundError(f"{url}: no {split} clips in the shards")

    def windows(self, seconds: int) -> list[tuple[int, int]]:
        n = seconds * self.fps
        return [
            (i, s)
            for i, c in enumerate(self.clips)
            for s in range(0, len(c["frames"]) - n + 1, self.fps // 2)
        ]

    def clip(self, window: tuple[int, int], seconds: int) -> TrainClip:
        i, start = window
        c = self.clips[i]
        stop = start + seconds * self.fps
        a, b = start * self.sr // self.fps, stop * self.sr // self.fps
        return TrainClip(
            c["frames"][start:stop],
            _with_context(c["character"], a, b, self.sr),
            _with_context(c["partner"], a, b, self.sr),
            c["caption"],
            c["identity"],
            None if c["face_boxes"] is None else c["face_boxes"][start:stop],
            None if c["mouth_open"] is None else c["mouth_open"][start:stop],
        )

    def references(self, identity: str) -> ReferenceImages:
        return self.refs[identity]
