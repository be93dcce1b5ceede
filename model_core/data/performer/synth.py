"""`lpm data synth`: a folder of raw recordings and reference sets, resumable.

Layout of the output folder:
- `raw/<name>.mp4|.gt.jsonl|.meta.json`: the recordings (see `recording.py`).
- `identities/<id>.refs.npz`: the identity's reference set (1 global, 4 body views, 8 faces).
- `synth.json`: what was asked and what was measured (frames, seconds, fps).
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_core.data.performer.identity import HELD_OUT_EVERY, sample_identity
from model_core.data.performer.recording import render_recording
from model_core.data.performer.render import reference_set
from model_core.data.performer.speech import EspeakSynth

PARTNER_OFFSET = 1_000_000  # partner voices come from identities far from the characters


@dataclass
class SynthPlan:
    out: Path
    minutes: float
    seed: int = 0
    size: int = 128
    recording_seconds: float = 60.0
    split: str = "train"  # "train" or "heldout": identities and speech lines of that split
    recordings_per_identity: int = 2
    workers: int = 1

    def recordings(self) -> list[tuple[str, int, float]]:
        """(name, identity index, seconds) for every recording of the plan."""
        total = self.minutes * 60.0
        n = max(1, math.ceil(total / self.recording_seconds - 1e-9))
        out = []
        for k in range(n):
            seconds = min(self.recording_seconds, total - k * self.recording_seconds)
            seconds = max(seconds, 4.0)
            out.append(
                (f"rec-s{self.seed}-{self.split[0]}{k:05d}", self.identity_index(k), seconds)
            )
        return out

    def identity_index(self, k: int) -> int:
        j = k // self.recordings_per_identity
        # The j-th identity of the split: held-out ones are index % 10 == 9.
        if self.split == "heldout":
            return j * HELD_OUT_EVERY + HELD_OUT_EVERY - 1
        return j + j // (HELD_OUT_EVERY - 1)


def _render_one(args) -> dict:
    name, index, seconds, plan = args
    raw = plan.out / "raw"
    if all((raw / f"{name}{ext}").exists() for ext in (".mp4", ".gt.jsonl", ".meta.json")):
        return {"name": name, "skipped": True}
    synth = EspeakSynth(cache_dir=plan.out / ".speech_cache")
    identity = sample_identity(index, plan.seed)
    partner = sample_identity(PARTNER_OFFSET + index, plan.seed).voice
    rec_seed = plan.seed * 7919 + index * 31 + int(name[-5:])
    st = render_recording(
        name, raw, identity, partner, seconds, rec_seed, synth, plan.size, speech_split=plan.split
    )
    refs_path = plan.out / "identities" / f"{identity.id}.refs.npz"
    if not refs_path.exists():
        refs = reference_set(identity, plan.size)
        # Recordings of one identity may render in parallel: each writes its own temp file
        # (the same content), and the atomic rename makes whichever lands last the file.
        tmp = refs_path.with_name(f".{refs_path.stem}.{name}.part.npz")
        np.savez_compressed(
            tmp,
            **{k.replace("/", "__"): v for k, v in refs.items()},
            identity=json.dumps(identity.to_dict()),
        )
        tmp.replace(refs_path)
    return {
        "name": name,
        "skipped": False,
        "frames": st.frames,
        "render_s": st.render_s,
        "encode_s": st.encode_s,
        "script_s": st.script_s,
        "cpu_s": st.cpu_s,
    }


def synthesize(plan: SynthPlan, progress=None) -> dict:
    """Render every recording of the plan that is not already complete on disk."""
    (plan.out / "raw").mkdir(parents=True, exist_ok=True)
    (plan.out / "identities").mkdir(parents=True, exist_ok=True)
    for stale in [
        *(plan.out / "raw").glob(".*.part"),
        *(plan.out / "identities").glob(".*.part.npz"),
    ]:
        stale.unlink()
    jobs = [(name, idx, sec, plan) for name, idx, sec in plan.recordings()]
    t0 = time.perf_counter()
    results = []
    if plan.workers > 1:
        with ProcessPoolExecutor(plan.workers) as pool:
            for r in pool.map(_render_one, jobs):
                results.append(r)
                if progress:
                    progress(r)
    else:
        for job in jobs:
            r = _render_one(job)
            results.append(r)
            if progress:
                progress(r)
    wall = time.perf_counter() - t0
    done = [r for r in results if not r["skipped"]]
    frames = sum(r["frames"] for r in done)
    cpu = sum(r["render_s"] + r["encode_s"] + r["script_s"] for r in done)
    summary = {
        "seed": plan.seed,
        "minutes": plan.minutes,
        "size": plan.size,
        "split": plan.split,
        "recordings": len(results),
        "rendered": len(done),
        "skipped": len(results) - len(done),
        "frames": frames,
        "wall_s": round(wall, 3),
        "render_s": round(sum(r["render_s"] for r in done), 3),
        "encode_s": round(sum(r["encode_s"] for r in done), 3),
        "script_s": round(sum(r["script_s"] for r in done), 3),
        "cpu_s": round(sum(r["cpu_s"] for r in done), 3),
        "fps_per_process": round(frames / cpu, 1) if cpu else None,
        # Frames per CPU-second: the per-core rate on an otherwise idle machine.
        "fps_per_cpu_core": round(frames / sum(r["cpu_s"] for r in done), 1) if done else None,
        "fps_wall": round(frames / wall, 1) if wall and frames else None,
    }
    if summary["fps_per_process"]:
        # Hours of 24 fps footage one hour of `workers` processes renders.
        summary["footage_hours_per_hour"] = round(frames / wall / 24.0, 2) if wall else None
        summary["footage_hours_per_hour_2_cores"] = round(2 * summary["fps_per_cpu_core"] / 24.0, 2)
    (plan.out / "synth.json").write_text(json.dumps(summary, indent=1))
    return summary
