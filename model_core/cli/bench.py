"""`lpm bench ...`: benchmarks as commands with JSON output.

The group is open: each benchmark is a registrar that adds its own sub-command. `realtime` is
here; other files join by listing their registrars in a module-level `REGISTRARS` and naming
the module in `BENCHMARK_MODULES` (`quality` and `train-judges` from the bench/training side).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path

from model_core.cli.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmarks (JSON output)", description="Benchmarks with JSON output."
    )
    sub = p.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    for register_benchmark in benchmark_registrars():
        register_benchmark(sub)


def register_realtime(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "realtime",
        help="stream for N seconds and measure real-time factor, latency, flatness, memory",
        description="Run a long Online stream and the naive full-history baseline in one run; "
        "report real-time factor (overall and per stage), time to first frame, p50/p99 chunk "
        "latency, flatness, memory growth and the Backbone's share of the matmul peak.",
    )
    p.add_argument("--preset", default="tiny")
    p.add_argument("--checkpoint", metavar="PATH")
    p.add_argument("--seconds", type=int, default=600, help="windowed stream length (default 600)")
    p.add_argument(
        "--naive-seconds",
        type=int,
        default=60,
        metavar="N",
        help="length of the naive full-history baseline run, whose chunk cost grows with its "
        "length; 0 to skip (default 60)",
    )
    p.add_argument(
        "--naive-max-chunk-s",
        type=float,
        default=30.0,
        metavar="S",
        help="stop the naive run once one chunk takes longer than this (default 30)",
    )
    p.add_argument("--threads", type=int, help="torch threads (default: all logical CPUs)")
    p.add_argument(
        "--warmup-chunks",
        type=int,
        default=2,
        metavar="N",
        help="chunks of a throwaway first stream, so the measured ones see a warm process "
        "(default 2)",
    )
    p.add_argument(
        "--peak-matmul-n",
        type=int,
        default=2048,
        metavar="N",
        help="side of the square fp32 matmul that measures the FLOP/s peak (default 2048)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT.json", help="write the full results here")
    p.add_argument("--png", metavar="OUT.png", help="plot per-chunk latency over time here")
    p.set_defaults(func=run_realtime, _prog=p.prog)


def run_realtime(args: argparse.Namespace) -> int:
    from model_core.cli.perform import check_output_path, load_config, write_json

    if args.seconds < 1:
        raise UsageError(f"--seconds must be >= 1, got {args.seconds}")
    if args.naive_seconds < 0:
        raise UsageError(f"--naive-seconds must be >= 0, got {args.naive_seconds}")
    if args.warmup_chunks < 1:
        raise UsageError(f"--warmup-chunks must be >= 1, got {args.warmup_chunks}")
    if args.peak_matmul_n < 64:
        raise UsageError(f"--peak-matmul-n must be >= 64, got {args.peak_matmul_n}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    load_config(args.preset, args.checkpoint)  # unknown preset / bad checkpoint -> usage error
    json_path = check_output_path(args.json, ".json") if args.json else None
    png_path = check_output_path(args.png, ".png") if args.png else None

    from model_core.bench.realtime import (
        RealtimeBenchSettings,
        format_summary,
        plot_latency,
        run_realtime_bench,
    )

    result = run_realtime_bench(
        RealtimeBenchSettings(
            preset=args.preset,
            seconds=args.seconds,
            naive_seconds=args.naive_seconds,
            naive_max_chunk_s=args.naive_max_chunk_s,
            threads=args.threads,
            checkpoint=args.checkpoint,
            seed=args.seed,
        )
    )
    if json_path:
        write_json(json_path, result)
    if png_path:
        png_path.parent.mkdir(parents=True, exist_ok=True)
        plot_latency(result, png_path)
    print(format_summary(result))
    for label, path in (("results", json_path), ("plot", png_path)):
        if path:
            print(f"  {label}: {Path(path)}")
    return 0


# Modules with a `REGISTRARS` tuple; one not written yet is skipped.
BENCHMARK_MODULES = ("model_core.cli.bench_quality", "model_core.cli.bench_vae")


def benchmark_registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    registrars = [register_realtime]
    for name in BENCHMARK_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        registrars.extend(module.REGISTRARS)
    return registrars
