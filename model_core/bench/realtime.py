"""Real-time benchmark of the Online pipeline: a long stream, and the naive baseline beside it.

One run measures, on this machine and at one thread count:
- the windowed stream (attention sink + sliding window), `seconds` chunks long: real-time
  factor overall and per stage, time to first frame, p50/p99 chunk latency, flatness (mean
  chunk cost of the last minute over the first), resident memory at start and end;
- the naive baseline (the same model attending over the whole history, no window) for a
  shorter span, since its cost grows without bound: its RTF at the end of that span, its
  growth curve, and a FLOP-count projection to the full length;
- the Backbone's achieved FLOP/s as a fraction of a large fp32 matmul's FLOP/s measured in
  the same run (`mfu`).
Cost, not quality, is measured: random weights run exactly as fast as trained ones.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import psutil
import torch

from model_core.progress import progress_bar

STAGES = ("audio", "backbone", "refiner", "vae")
MINUTE = 60


@dataclass
class RealtimeBenchSettings:
    preset: str = "tiny"
    seconds: int = 600
    naive_seconds: int = 60
    naive_max_chunk_s: float = 30.0  # stop the naive run early once a chunk takes this long
    threads: int | None = None  # None: os.cpu_count()
    checkpoint: str | None = None
    seed: int = 0
    warmup_chunks: int = 2
    progress: bool | None = None  # None: a bar only on a terminal
    peak_matmul_n: int = 2048


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def measure_matmul_peak(n: int = 2048, reps: int = 6) -> float:
    """Best fp32 FLOP/s of an n x n matmul at the current torch thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _loop(track: np.ndarray, n: int) -> np.ndarray:
    return np.resize(track.astype(np.float32), n)  # repeats the dialogue end to end


def stream_chunks(
    pipe,
    refs,
    speak: np.ndarray,
    listen: np.ndarray,
    text: str,
    chunks: int,
    *,
    window_chunks: int | None | str = "config",
    desc: str,
    progress: bool | None,
    stop_chunk_s: float | None = None,
    rss_every: int = 10,
) -> dict:
    """Push `chunks` seconds through a fresh stream; per-chunk wall times and stage timings."""
    sr = pipe.config.audio.sample_rate
    kw = {} if window_chunks == "config" else {"window_chunks": window_chunks}
    rss_start = rss_mb()
    t0 = time.perf_counter()
    stream = pipe.start_stream(refs, text=text, **kw)
    start_stream_s = time.perf_counter() - t0
    first_frame_s = None
    wall: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    rss_curve: list[tuple[int, float]] = [(0, rss_start)]
    stopped = None
    with progress_bar(chunks, desc, unit="chunk", progress=progress) as bar:
        for i in range(chunks):
            s = slice(i * sr, (i + 1) * sr)
            t = time.perf_counter()
            res = stream.push(speak[s], listen[s])
            wall.append(time.perf_counter() - t)
            if first_frame_s is None:
                first_frame_s = time.perf_counter() - t0
            for k in STAGES:
                stages[k].append(float(res.timings.get(k, 0.0)))
            if (i + 1) % rss_every == 0:
                rss_curve.append((i + 1, rss_mb()))
            bar.update(1)
            bar.set_postfix(ms=f"{wall[-1] * 1e3:.0f}")
            if stop_chunk_s is not None and wall[-1] > stop_chunk_s:
                stopped = f"chunk {i} took {wall[-1]:.1f} s > {stop_chunk_s:g} s"
                break
    kv_bytes = stream.cache.nbytes() if hasattr(stream, "cache") else None
    return {
        "wall": wall,
        "stages": stages,
        "start_stream_s": start_stream_s,
        "first_frame_s": first_frame_s,
        "rss_start": rss_start,
        "rss_end": rss_mb(),
        "rss_curve": rss_curve,
        "stopped": stopped,
        "kv_cache_bytes": kv_bytes,
    }


def _ms(x) -> float:
    return round(float(x) * 1e3, 3)


def summarise(run: dict) -> dict:
    wall = np.array(run["wall"])
    n = len(wall)
    span = min(MINUTE, max(1, n // 2))
    out = {
        "chunks": n,
        "rtf": float(wall.sum() / n),  # 1 chunk = 1 s of media
        "rtf_per_stage": {k: float(np.sum(v) / n) for k, v in run["stages"].items()},
        "first_frame_s": run["first_frame_s"],
        "start_stream_s": run["start_stream_s"],
        "chunk_ms_p50": _ms(np.percentile(wall, 50)),
        "chunk_ms_p99": _ms(np.percentile(wall, 99)),
        "chunk_ms_max": _ms(wall.max()),
        "flatness": float(wall[-span:].mean() / wall[:span].mean()),
        "flatness_span_chunks": span,
        "rss_start_mb": round(run["rss_start"], 1),
        "rss_end_mb": round(run["rss_end"], 1),
        "rss_growth_mb": round(run["rss_end"] - run["rss_start"], 1),
    }
    return out


def run_realtime_bench(s: RealtimeBenchSettings) -> dict:
    from model_core.bench.flops import ChunkWorkload, online_chunk_flops
    from model_core.pipeline import LPMPipeline, ReferenceImages
    from model_core.sample import load_sample

    threads = s.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    peak = measure_matmul_peak(s.peak_matmul_n)
    pipe = LPMPipeline.build(preset=s.preset, checkpoint=s.checkpoint, seed=s.seed, with_base=False)
    cfg = pipe.config
    sample = load_sample(cfg)
    refs = ReferenceImages(sample.global_image, sample.body, sample.face)
    sr = cfg.audio.sample_rate
    speak = _loop(sample.speak, s.seconds * sr)
    listen = _loop(sample.listen, s.seconds * sr)

    # A cold stream first: what the very first user of a fresh process waits. The measured
    # streams then see a warm process, as sessions on a running server do.
    cold = stream_chunks(
        pipe,
        refs,
        speak,
        listen,
        sample.text,
        s.warmup_chunks,
        desc="warm-up",
        progress=s.progress,
    )
    windowed = stream_chunks(
        pipe, refs, speak, listen, sample.text, s.seconds, desc="windowed", progress=s.progress
    )
    result = summarise(windowed)
    result["first_frame_cold_s"] = cold["first_frame_s"]
    result["per_chunk_ms"] = [_ms(x) for x in windowed["wall"]]
    result["per_chunk_stage_ms"] = {k: [_ms(x) for x in v] for k, v in windowed["stages"].items()}
    result["rss_curve_mb"] = [[i, round(m, 1)] for i, m in windowed["rss_curve"]]
    result["kv_cache_bytes_end"] = windowed["kv_cache_bytes"]

    # Achieved FLOP/s: FLOPs counted for this exact workload (refs, text length) over the
    # measured steady-state stage times (the window is full after `window_chunks` chunks).
    text_tokens = int(pipe.encode_text(sample.text)[0].shape[1])
    workload = ChunkWorkload(
        n_body=len(sample.body), n_face=len(sample.face), text_tokens=text_tokens
    )
    flops = online_chunk_flops(cfg, workload)
    steady = slice(min(cfg.online.window_chunks, s.seconds - 1), None)
    achieved = {k: flops[k] / float(np.mean(windowed["stages"][k][steady])) for k in STAGES}
    result |= {
        "mfu": achieved["backbone"] / peak,
        "mfu_per_stage": {k: v / peak for k, v in achieved.items()},
        "matmul_peak_gflops": peak / 1e9,
        "backbone_gflops_achieved": achieved["backbone"] / 1e9,
        "flops_per_chunk": flops,
    }

    naive = None
    if s.naive_seconds > 0:
        naive = stream_chunks(
            pipe,
            refs,
            speak,
            listen,
            sample.text,
            min(s.naive_seconds, s.seconds),
            window_chunks=None,
            desc="naive",
            progress=s.progress,
            stop_chunk_s=s.naive_max_chunk_s,
        )
        ns = summarise(naive)
        tail = np.array(naive["wall"][-min(10, len(naive["wall"])) :])
        # The naive cost keeps growing, so project its last chunk at full length from the FLOP
        # count at that history length and the cost measured at the end of its span. Only the
        # Backbone attends to the history; the other stages cost what they always do.
        n_run = ns["chunks"]
        others = sum(v for k, v in flops.items() if k != "backbone")

        def naive_backbone(history: int) -> int:
            wl = dataclasses.replace(workload, history_chunks=history, window_chunks=None)
            return online_chunk_flops(cfg, wl, stages=("backbone",))["backbone"]

        f_end, f_full = naive_backbone(n_run - 1), naive_backbone(s.seconds - 1)
        ratio = (others + f_full) / (others + f_end)
        result |= {
            "naive_rtf": float(tail.mean()),
            "naive_rtf_definition": (
                f"mean chunk cost over the last {len(tail)} chunks of a {n_run}-chunk naive "
                "stream (full history, no window): its real-time factor at the end of the span"
            ),
            "naive_rtf_overall": ns["rtf"],
            "naive_seconds": n_run,
            "naive_stopped_early": naive["stopped"],
            "naive_first_frame_s": ns["first_frame_s"],
            "naive_chunk_ms_p50": ns["chunk_ms_p50"],
            "naive_chunk_ms_p99": ns["chunk_ms_p99"],
            "naive_growth": float(tail.mean() / np.mean(naive["wall"][: len(tail)])),
            "naive_rss_growth_mb": ns["rss_growth_mb"],
            "naive_kv_cache_bytes_end": naive["kv_cache_bytes"],
            "naive_per_chunk_ms": [_ms(x) for x in naive["wall"]],
            "naive_backbone_flops_end": f_end,
            "naive_backbone_flops_at_full_length": f_full,
            "naive_projected_rtf_at_full_length": float(tail.mean() * ratio),
            "naive_projection": (
                f"naive chunk FLOPs at history {s.seconds - 1} over those at {n_run - 1} "
                f"(x{ratio:.2f}) times the measured end-of-span cost: an estimate, not a "
                "measurement"
            ),
        }
    else:
        result["naive_rtf"] = None

    result |= {
        "preset": cfg.name,
        "seconds": s.seconds,
        "window_chunks": cfg.online.window_chunks,
        "backbone_steps": cfg.online.backbone_steps,
        "threads": threads,
        "warmup_chunks": s.warmup_chunks,
        "machine": {
            "cpu": _cpu_name(),
            "logical_cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "definitions": {
            "rtf": "sum of per-chunk push wall time / media seconds (1 chunk = 1 s)",
            "rtf_per_stage": "sum of a stage's time / media seconds",
            "first_frame_s": "start_stream (reference encoding, sink) to the first 24 frames, "
            "warm process; first_frame_cold_s is the same for the first stream of the process",
            "flatness": "mean chunk cost of the last flatness_span_chunks over the first",
            "rss_growth_mb": "resident memory at the end of the windowed stream minus at its start",
            "mfu": "Backbone FLOPs per chunk (torch flop counter) / mean steady-state Backbone "
            f"time, over the best fp32 {s.peak_matmul_n}x{s.peak_matmul_n} matmul FLOP/s at "
            "the same thread count",
        },
    }
    return result


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def plot_latency(result: dict, path: str | os.PathLike) -> None:
    """Per-chunk latency over media time, windowed vs naive, with the real-time line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    w = result["per_chunk_ms"]
    ax.plot(
        np.arange(1, len(w) + 1),
        w,
        lw=0.8,
        label=f"sink + window of {result['window_chunks']} (RTF {result['rtf']:.2f})",
    )
    if result.get("naive_per_chunk_ms"):
        nv = result["naive_per_chunk_ms"]
        ax.plot(
            np.arange(1, len(nv) + 1),
            nv,
            lw=0.8,
            color="tab:red",
            label=f"naive full history (RTF {result['naive_rtf']:.2f} at {len(nv)} s)",
        )
    ax.axhline(1000, color="k", ls="--", lw=0.8, label="real time (1 s per chunk)")
    ax.set_xlabel("media time (s) = chunk index")
    ax.set_ylabel("chunk latency (ms)")
    ax.set_title(
        f"Online LPM '{result['preset']}' on {result['threads']} threads: "
        f"p50 {result['chunk_ms_p50']:.0f} ms, p99 {result['chunk_ms_p99']:.0f} ms, "
        f"flatness {result['flatness']:.3f}",
        fontsize=10,
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_summary(r: dict) -> str:
    st = ", ".join(f"{k} {v:.3f}" for k, v in r["rtf_per_stage"].items())
    lines = [
        f"Online LPM '{r['preset']}', {r['seconds']} s stream, {r['threads']} threads",
        f"  RTF {r['rtf']:.3f} (per stage: {st})",
        f"  first frame {r['first_frame_s']:.3f} s (cold process {r['first_frame_cold_s']:.3f} s)",
        f"  chunk latency p50 {r['chunk_ms_p50']:.1f} ms, p99 {r['chunk_ms_p99']:.1f} ms",
        f"  flatness {r['flatness']:.3f} (last {r['flatness_span_chunks']} chunks / first)",
        f"  RSS {r['rss_start_mb']:.0f} -> {r['rss_end_mb']:.0f} MB "
        f"(growth {r['rss_growth_mb']:+.1f} MB)",
        f"  Backbone {r['backbone_gflops_achieved']:.1f} GFLOP/s of a {r['matmul_peak_gflops']:.1f}"
        f" GFLOP/s matmul peak: mfu {r['mfu']:.3f}",
    ]
    if r.get("naive_rtf") is not None:
        lines.append(
            f"  naive (full history): RTF {r['naive_rtf']:.3f} at {r['naive_seconds']} s "
            f"(x{r['naive_growth']:.2f} its start), projected {r['naive_projected_rtf_at_full_length']:.2f}"
            f" at {r['seconds']} s"
        )
    return "\n".join(lines)
