"""The whole curation over a folder (or S3 prefix) of raw recordings, resumable.

Per recording, each stage's manifest is written to `manifest/<name>/<stage>.json` as soon as
the stage finishes and reused by a re-run; the shard `shards/<name>.tar` is written whole
(temp file + rename, or one S3 upload), and `manifest/<name>/done.json` last. A recording with
`done.json` is skipped on a re-run, so an interrupted run resumes without duplicating output.
A recording that fails (corrupt or truncated video, wrong audio tracks) gets
`manifest/<name>/error.json` and the others go on.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_core.data.curation import evaluate
from model_core.data.curation.captions import ScriptCaptioner, TextEmbedder, pick_global_frame
from model_core.data.curation.dialogue import DialogueConfig, recognize_dialogue
from model_core.data.curation.quality import (
    QualityConfig,
    crop_box_coords,
    crop_frames,
    filter_quality,
)
from model_core.data.curation.shots import ShotConfig, extract_shots
from model_core.data.curation.source import (
    SAMPLE_RATE,
    RawRecording,
    RecordingError,
    load_recording,
)
from model_core.data.shards import BODY_VIEWS, FACE_LABELS, ClipSample, build_shard, sha256
from model_core.data.storage import Store, open_store

STAGES = ("shots", "quality", "dialogue", "captions")


class CurationInputError(Exception):
    """Input that cannot be curated at all (empty folder, missing bucket)."""


@dataclass
class CurateOptions:
    size: int = 128
    shots: ShotConfig = field(default_factory=ShotConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    dialogue: DialogueConfig = field(default_factory=DialogueConfig)


@dataclass
class CurateResult:
    processed: list[str]
    skipped: list[str]
    errors: dict[str, str]
    summary: dict


def find_recordings(store: Store) -> list[str]:
    """Keys of the raw MP4s: `raw/*.mp4` when there is a raw/ folder, else `*.mp4`."""
    keys = [k for k in store.list() if k.endswith(".mp4")]
    raw = [k for k in keys if k.startswith("raw/")]
    return sorted(raw or [k for k in keys if "/" not in k])


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1][: -len(".mp4")]


def _fetch(in_store: Store, key: str, tmp: Path) -> Path:
    """A local path for the recording and its sidecars (downloaded when the store is S3)."""
    local = in_store.local_path(key)
    if local is not None:
        return local
    base = key[: -len(".mp4")]
    for ext in (".mp4", ".gt.jsonl", ".meta.json"):
        if ext == ".mp4" or in_store.exists(base + ext):
            (tmp / Path(base + ext).name).write_bytes(in_store.get(base + ext))
    return tmp / Path(key).name


def _load_refs(in_store: Store, key: str, identity: str, size: int) -> dict[str, np.ndarray]:
    prefix = key.rsplit("/", 1)[0] + "/" if key.startswith("raw/") else ""
    root = prefix[: -len("raw/")] if prefix.startswith("raw/") else ""
    ref_key = f"{root}identities/{identity}.refs.npz"
    if not in_store.exists(ref_key):
        blank = np.zeros((size, size, 3), np.uint8)
        return {
            "global": blank,
            "body": np.stack([blank] * 4),
            "face": np.stack([blank] * 8),
            "complete": np.array(False),
        }
    import io

    z = np.load(io.BytesIO(in_store.get(ref_key)))
    return {
        "global": z["global"],
        "body": np.stack([z[f"body__{v}"] for v in BODY_VIEWS]),
        "face": np.stack([z[f"face__{e}"] for e in FACE_LABELS]),
        "complete": np.array(True),
    }


def _stage(out: Store, name: str, stage: str, fn: Callable[[], dict]) -> dict:
    key = f"manifest/{name}/{stage}.json"
    if out.exists(key):
        try:
            return json.loads(out.get(key))
        except ValueError:
            pass  # a torn manifest is recomputed
    manifest = fn()
    out.put(key, json.dumps(manifest).encode())
    return manifest


def curate_recording(
    rec: RawRecording,
    out: Store,
    refs: dict[str, np.ndarray],
    opts: CurateOptions,
    embedder: TextEmbedder,
) -> dict:
    """All four stages on one recording; writes manifests, the shard, eval and done.json."""
    name = rec.name
    t0 = time.perf_counter()
    m1 = _stage(out, name, "shots", lambda: extract_shots(rec, opts.shots))
    m2 = _stage(out, name, "quality", lambda: filter_quality(rec, m1, opts.quality))
    m3 = _stage(out, name, "dialogue", lambda: recognize_dialogue(rec, m2, opts.dialogue))
    t4 = time.perf_counter()
    clips = [dict(c) for c in m3["clips"]]
    captioner = ScriptCaptioner()
    for c in clips:
        c.update(captioner.describe(rec, c["start"], c["end"], c["state"]))
    embeddings = embedder.embed([c["caption"] for c in clips])
    identity = (rec.meta or {}).get("identity", {})
    samples = []
    hop = SAMPLE_RATE / rec.fps
    for k, c in enumerate(clips):
        frames = crop_frames(rec.frames[c["start"] : c["end"]], c["crop"], opts.size)
        a, b = int(round(c["start"] * hop)), int(round(c["end"] * hop))
        g = pick_global_frame(clips, k)
        clip_refs = {"global": refs["global"], "body": refs["body"], "face": refs["face"]}
        global_from = "identity_reference"
        if g is not None:
            other = clips[g]
            mid = (other["start"] + other["end"]) // 2
            clip_refs["global"] = crop_frames(rec.frames[mid : mid + 1], other["crop"], opts.size)[
                0
            ]
            global_from = f"{name}:{mid}"
        meta = {
            "key": f"{name}_{k:04d}",
            "recording": name,
            "identity": rec.identity,
            "split": identity.get("split", "train"),
            "fps": rec.fps,
            "frames": c["end"] - c["start"],
            "source_start": c["start"],
            "source_end": c["end"],
            "crop": c["crop"],
            "state": c["state"],
            "caption": c["caption"],
            "emotion": c["emotion"],
            "action": c["action"],
            "view": c["view"],
            "global_reference_from": global_from,
            "references_complete": bool(refs["complete"]),
        }
        if rec.gt:
            seg = rec.gt[c["start"] : c["end"]]
            meta["gt"] = {
                k2: [g2[k2] for g2 in seg]
                for k2 in (
                    "state",
                    "mouth_open",
                    "head_pose",
                    "expression",
                    "gesture",
                    "reaction",
                    "gaze",
                    "blink",
                )
            }
            meta["gt"]["face_box"] = [
                crop_box_coords(g2.get("face_box"), c["crop"], opts.size) for g2 in seg
            ]
        samples.append(
            ClipSample(
                meta["key"],
                frames,
                rec.character[a:b],
                rec.partner[a:b],
                clip_refs,
                embeddings[k],
                meta,
            )
        )
        c["key"] = meta["key"]
    data = build_shard(samples)
    shard_key = f"shards/{name}.tar"
    out.put(shard_key, data)
    m4 = {
        "stage": "captions",
        "recording": name,
        "frames_in": m3["frames_kept"],
        "frames_kept": sum(c["end"] - c["start"] for c in clips),
        "clips": [
            {
                k2: c[k2]
                for k2 in ("key", "start", "end", "state", "caption", "emotion", "action", "view")
            }
            for c in clips
        ],
        "seconds": round(time.perf_counter() - t4, 4),
    }
    out.put(f"manifest/{name}/captions.json", json.dumps(m4).encode())
    ev = {}
    if rec.gt and rec.meta:
        ev = {
            "shots": evaluate.eval_shots(m1, rec.meta),
            "quality": evaluate.eval_quality(m2, rec.gt, rec.meta),
            "dialogue": evaluate.eval_dialogue(m3, m2, rec.gt),
            "captions": evaluate.eval_captions(clips, rec.gt),
        }
    out.put(f"manifest/{name}/eval.json", json.dumps(ev).encode())
    done = {
        "recording": name,
        "identity": rec.identity,
        "shard": shard_key,
        "clips": len(clips),
        "bytes": len(data),
        "sha256": sha256(data),
        "frames_raw": rec.num_frames,
        "fps": rec.fps,
        "frames_kept": {s: m["frames_kept"] for s, m in zip(STAGES, (m1, m2, m3, m4))},
        "seconds": {s: m["seconds"] for s, m in zip(STAGES, (m1, m2, m3, m4))},
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    out.put(f"manifest/{name}/done.json", json.dumps(done).encode())
    return done


def write_index(out: Store) -> dict:
    shards = []
    for key in out.list("manifest/"):
        if key.endswith("/done.json"):
            d = json.loads(out.get(key))
            shards.append(
                {
                    "key": d["shard"],
                    "recording": d["recording"],
                    "clips": d["clips"],
                    "bytes": d["bytes"],
                    "sha256": d["sha256"],
                }
            )
    shards.sort(key=lambda s: s["key"])
    index = {"format": "lpm-shards/1", "shards": shards, "clips": sum(s["clips"] for s in shards)}
    out.put("index.json", json.dumps(index, indent=1).encode())
    return index


def curate(
    in_url: str,
    out_url: str,
    opts: CurateOptions | None = None,
    progress: Callable[[str, str], None] | None = None,
    s3_client=None,
) -> CurateResult:
    """Curate every raw recording under `in_url` into `out_url` (folders or s3:// prefixes)."""
    from model_core.data.storage import StoreError

    opts = opts or CurateOptions()
    try:
        in_store = open_store(in_url, client=s3_client)
        keys = find_recordings(in_store)
        if not keys:
            raise CurationInputError(f"no recordings (*.mp4) in {in_url}")
        out_store = open_store(out_url, create=True, client=s3_client)
    except StoreError as e:
        raise CurationInputError(str(e)) from e
    out_store.clean_partial()
    embedder = TextEmbedder()
    processed, skipped, errors = [], [], {}
    t0 = time.perf_counter()
    for key in keys:
        name = _name(key)
        if out_store.exists(f"manifest/{name}/done.json") and out_store.exists(
            f"shards/{name}.tar"
        ):
            skipped.append(name)
            if progress:
                progress(name, "skipped (done)")
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="lpm-curate-") as tmp:
                rec = load_recording(_fetch(in_store, key, Path(tmp)), name)
            refs = _load_refs(in_store, key, rec.identity, opts.size)
            done = curate_recording(rec, out_store, refs, opts, embedder)
            if out_store.exists(f"manifest/{name}/error.json"):
                out_store.delete(f"manifest/{name}/error.json")
            processed.append(name)
            if progress:
                progress(name, f"{done['clips']} clips")
        except RecordingError as e:
            errors[name] = str(e)
        except Exception as e:  # one bad recording must not stop the others
            errors[name] = f"{in_store.url}/{key}: {e.__class__.__name__}: {e}"
        if name in errors:
            out_store.put(
                f"manifest/{name}/error.json", json.dumps({"error": errors[name]}).encode()
            )
            if progress:
                progress(name, f"error: {errors[name]}")
    index = write_index(out_store)
    summary = {
        "recordings": len(keys),
        "processed": len(processed),
        "skipped": len(skipped),
        "errors": len(errors),
        "clips": index["clips"],
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    prev = json.loads(out_store.get("curate.json")) if out_store.exists("curate.json") else {}
    summary["runs"] = prev.get("runs", 0) + 1
    out_store.put("curate.json", json.dumps(summary, indent=1).encode())
    return CurateResult(processed, skipped, errors, summary)
