"""`lpm data synth|curate|report`: the procedural performer and the curation pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model_core.cli.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="synthesize, curate and report training data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser(
        "synth", help="render raw recordings of synthetic characters with ground truth"
    )
    p.add_argument("--minutes", type=float, required=True, help="total footage to render")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (square)")
    p.add_argument("--recording-seconds", type=float, default=60.0, help="length of each recording")
    p.add_argument(
        "--split",
        choices=("train", "heldout"),
        default="train",
        help="identities and speech lines: training or held-out (for the bench)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel render processes")
    p.add_argument("--json", help="also write the run summary here")
    p.set_defaults(func=run_synth, _prog="lpm data synth")

    p = sub.add_parser("curate", help="four-stage curation of raw recordings into training shards")
    p.add_argument("input", metavar="IN", help="folder or s3://bucket/prefix of raw recordings")
    p.add_argument("output", metavar="OUT", help="folder or s3://bucket/prefix for shards")
    p.add_argument("--size", type=int, default=128, help="training frame size")
    p.set_defaults(func=run_curate, _prog="lpm data curate")

    p = sub.add_parser(
        "report", help="retention, per-stage precision/recall, dialogue F1, throughput"
    )
    p.add_argument("dir", metavar="DIR", help="curation output (folder or s3://bucket/prefix)")
    p.add_argument(
        "--png",
        nargs="?",
        const="",
        default=None,
        help="write a figure (default DIR/report.png for a folder)",
    )
    p.add_argument("--json", dest="json_path", metavar="PATH", help="write the figures as JSON")
    p.set_defaults(func=run_report, _prog="lpm data report")


def run_synth(args: argparse.Namespace) -> int:
    if not args.minutes > 0:
        raise UsageError("--minutes must be positive")
    if args.size < 32 or args.size % 16:
        raise UsageError("--size must be a multiple of 16, at least 32")
    if args.recording_seconds < 4:
        raise UsageError("--recording-seconds must be at least 4")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    from model_core.data.performer.synth import SynthPlan, synthesize

    plan = SynthPlan(
        Path(args.out),
        args.minutes,
        args.seed,
        args.size,
        args.recording_seconds,
        args.split,
        workers=args.workers,
    )

    def progress(r: dict) -> None:
        state = "exists, skipped" if r["skipped"] else f"{r['frames']} frames"
        print(f"{r['name']}: {state}", file=sys.stderr)

    summary = synthesize(plan, progress)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


def run_curate(args: argparse.Namespace) -> int:
    from model_core.data.curation.pipeline import CurateOptions, CurationInputError, curate

    if args.size < 32 or args.size % 16:
        raise UsageError("--size must be a multiple of 16, at least 32")
    try:
        result = curate(
            args.input,
            args.output,
            CurateOptions(size=args.size),
            progress=lambda name, msg: print(f"{name}: {msg}", file=sys.stderr),
        )
    except CurationInputError as e:
        raise UsageError(str(e)) from e
    for err in result.errors.values():
        print(f"lpm data curate: error: {err}", file=sys.stderr)
    print(json.dumps(result.summary, indent=1))
    return 1 if result.errors else 0


def run_report(args: argparse.Namespace) -> int:
    from model_core.data.report import build_report, format_report, write_png
    from model_core.data.storage import StoreError, open_store

    try:
        store = open_store(args.dir)
        report = build_report(store)
    except (StoreError, ValueError) as e:
        raise UsageError(f"{args.dir}: {e}") from e
    print(format_report(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=1))
    if args.png is not None:
        png = args.png or (
            str(Path(args.dir) / "report.png")
            if not str(args.dir).startswith("s3://")
            else "report.png"
        )
        write_png(report, png)
        print(f"figure: {png}", file=sys.stderr)
    return 0
