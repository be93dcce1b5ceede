"""The curated shard format and its loader.

A shard is a POSIX tar named `shards/<recording>.tar` holding, per clip `KEY`
(`<recording>_<nnnn>`), five members (WebDataset style: same key, different extensions):

| member | content |
|---|---|
| `KEY.mp4` | the cropped clip, H.264, 128x128 (the `--size`), 24 fps, no audio |
| `KEY.audio.npz` | `character`, `partner`: int16 mono 16 kHz, exactly frames * 16000 / 24 samples, aligned to the video |
| `KEY.refs.npz` | `global` (H, W, 3) uint8; `body` (4, H, W, 3) front/left/right/back; `face` (8, H, W, 3) neutral/smile/laugh/frown/surprise/anger/sad/thinking |
| `KEY.emb.npy` | float32 (384,), unit-norm all-MiniLM-L6-v2 embedding of the caption |
| `KEY.json` | metadata: caption, state, emotion, action, view, identity, split, source frames, crop, and per-frame ground truth (`gt`: mouth_open, head_pose, expression, gesture, reaction, state, and face_box in the clip's pixels or null) when the source had it |

Beside the shards, `index.json` lists every shard with its clip count, bytes and sha256, and
`manifest/<recording>/` holds each stage's manifest. `ShardDataset` reads a local folder or
`s3://bucket/prefix` and yields one dict per clip.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
import torch

from model_core.data.storage import Store, open_store

BODY_VIEWS = ("front", "left", "right", "back")
FACE_LABELS = ("neutral", "smile", "laugh", "frown", "surprise", "anger", "sad", "thinking")


@dataclass
class ClipSample:
    key: str
    frames: np.ndarray  # uint8 (T, H, W, 3)
    character: np.ndarray  # float32 16 kHz
    partner: np.ndarray
    refs: dict[str, np.ndarray]  # global (H,W,3), body (4,H,W,3), face (8,H,W,3)
    embedding: np.ndarray
    meta: dict


def encode_mp4(frames: np.ndarray, fps: int = 24, crf: int = 18) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames.shape[1], frames.shape[2]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for f in frames:
            for pkt in s.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            ):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return buf.getvalue()


def decode_mp4(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _to_i16(pcm: np.ndarray) -> np.ndarray:
    return (np.clip(pcm, -1, 1) * 32767).round().astype(np.int16)


def build_shard(samples: list[ClipSample]) -> bytes:
    """A tar (bytes) of the samples, members in key order; deterministic given the samples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            members = {
                f"{s.key}.mp4": encode_mp4(s.frames, int(s.meta.get("fps", 24))),
                f"{s.key}.audio.npz": _npz(
                    character=_to_i16(s.character), partner=_to_i16(s.partner)
                ),
                f"{s.key}.refs.npz": _npz(**s.refs),
                f"{s.key}.emb.npy": _npy(s.embedding.astype(np.float32)),
                f"{s.key}.json": json.dumps(s.meta, sort_keys=True).encode(),
            }
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_shard(data: bytes, decode_video: bool = True) -> Iterator[dict]:
    """Samples of one shard's bytes, one dict per clip key."""
    groups: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            key, _, ext = m.name.partition(".")
            if key not in groups:
                groups[key] = {}
                order.append(key)
            f = tar.extractfile(m)
            groups[key][ext] = f.read() if f else b""
    for key in order:
        g = groups[key]
        audio = np.load(io.BytesIO(g["audio.npz"]))
        refs = np.load(io.BytesIO(g["refs.npz"]))
        yield {
            "key": key,
            "frames": decode_mp4(g["mp4"]) if decode_video else g["mp4"],
            "character": audio["character"].astype(np.float32) / 32767.0,
            "partner": audio["partner"].astype(np.float32) / 32767.0,
            "refs": {"global": refs["global"], "body": refs["body"], "face": refs["face"]},
            "embedding": np.load(io.BytesIO(g["emb.npy"])),
            "meta": json.loads(g["json"]),
        }


def list_shards(store: Store) -> list[str]:
    """Shard keys from `index.json` when present, else every `shards/*.tar`."""
    if store.exists("index.json"):
        index = json.loads(store.get("index.json"))
        return [s["key"] for s in index["shards"]]
    return [k for k in store.list("shards/") if k.endswith(".tar")]


class ShardDataset(torch.utils.data.IterableDataset):
    """Clips from curated shards in a local folder or `s3://bucket/prefix`.

    Shards are split across DataLoader workers; `split` keeps only clips whose identity split
    matches ("train" / "heldout"); `shuffle_seed` shuffles the shard order per epoch.
    """

    def __init__(
        self,
        url: str,
        decode_video: bool = True,
        split: str | None = None,
        shuffle_seed: int | None = None,
        s3_client=None,
    ):
        self.url = str(url)
        self.decode_video = decode_video
        self.split = split
        self.shuffle_seed = shuffle_seed
        self._client = s3_client
        self.shards = list_shards(self._store())

    def _store(self) -> Store:
        return open_store(self.url, client=self._client)

    def __iter__(self) -> Iterator[dict]:
        shards = list(self.shards)
        if self.shuffle_seed is not None:
            np.random.default_rng(self.shuffle_seed).shuffle(shards)
        info = torch.utils.data.get_worker_info()
        if info is not None:
            shards = shards[info.id :: info.num_workers]
        store = self._store()
        for key in shards:
            for sample in read_shard(store.get(key), self.decode_video):
                if self.split and sample["meta"].get("split") != self.split:
                    continue
                yield sample

    def __len__(self) -> int:
        store = self._store()
        if store.exists("index.json"):
            index = json.loads(store.get("index.json"))
            return sum(s["clips"] for s in index["shards"])
        return sum(1 for _ in self)
