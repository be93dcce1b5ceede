"""`lpm bench quality` and `lpm bench train-judges`: LPM-Bench-mini and the judges it reads
frames with. Registrars for the open `lpm bench` group (`model_core.cli.bench.BENCHMARKS`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_core.bench.systems import SYSTEMS as SYSTEM_NAMES
from model_core.cli.errors import UsageError


def register_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quality",
        help="LPM-Bench-mini: lip sync, identity, listening, stability and win rates",
        description="Render held-out performer scenarios (speaking 40%%, listening 20%%, "
        "dialogue 20%%, actions 10%%, unseen characters 10%%) with every system, score them "
        "with the trained judges, validate the metrics on ground-truth footage, and report a "
        "table, JSON and a figure.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small reproducible subset (10 samples x 2 s, 24 s stream)",
    )
    p.add_argument("--samples", type=int, help="scenario samples (default 100; quick 10)")
    p.add_argument("--seconds", type=int, help="seconds per sample (default 4; quick 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEM_NAMES)}")
    p.add_argument("--preset", default="tiny")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model to bench (default: the shipped checkpoint if present, else random init)",
    )
    p.add_argument("--base-steps", type=int, help="Base sampler steps (default 8; quick 4)")
    p.add_argument(
        "--base-every",
        type=int,
        default=1,
        metavar="N",
        help="render Base on every N-th sample only (default 1)",
    )
    p.add_argument(
        "--stream-seconds",
        type=int,
        help="length of the looped long stream (default 600; quick 24; 0 to skip)",
    )
    p.add_argument(
        "--stream-systems",
        help="comma-separated systems that run the long stream (default: every streaming "
        "system; the stream is the slowest part of the bench)",
    )
    p.add_argument("--minute-seconds", type=int, help="'minute' length (default 60; quick 6)")
    p.add_argument("--validation-samples", type=int, help="samples for metric validation")
    p.add_argument(
        "--listening-pass",
        type=int,
        metavar="N",
        help="dialogue loops every system but Base streams for its listening figure "
        "(default 3; quick 1; 0 to skip)",
    )
    p.add_argument(
        "--listening-pass-seconds",
        type=int,
        metavar="S",
        help="length of each of those loops (default 60; quick 12)",
    )
    p.add_argument("--judges", metavar="DIR", help="folder with the trained judges")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--json", metavar="OUT.json", help="write the full results here")
    p.add_argument("--md", metavar="OUT.md", help="write the Markdown tables here")
    p.add_argument("--png", metavar="OUT.png", help="write the figure here")
    p.set_defaults(func=run_quality, _prog=p.prog)


def register_train_judges(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-judges",
        help="train the bench's mouth/pose probe and identity embedder on performer renders",
        description="Train LPM-Bench-mini's FaceProbe (mouth opening, nod pitch, brow, yaw) "
        "and IdentityEmbedder on training-split performer identities, validate on held-out "
        "ones, and save both as safetensors.",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default model_core/assets/judges)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-frames", type=int, default=4000)
    p.add_argument("--probe-epochs", type=int, default=8)
    p.add_argument("--embed-steps", type=int, default=1500)
    p.add_argument(
        "--embed-size", type=int, default=96, help="the identity embedder's input, px (>= 32)"
    )
    p.add_argument(
        "--no-hard-negatives",
        action="store_true",
        help="train the embedder without twins and blurred negatives (as it was first trained)",
    )
    p.add_argument(
        "--only",
        choices=("probe", "embedder"),
        help="train this judge only; the other is kept from the --out folder's judges",
    )
    p.add_argument("--threads", type=int)
    p.set_defaults(func=run_train_judges, _prog=p.prog)


def _positive(name: str, value: int | None, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"--{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")


def quality_settings(args: argparse.Namespace):
    from dataclasses import replace

    from model_core.bench.quality import QualityBenchSettings, quick_settings

    for name in ("samples", "seconds", "base_steps", "base_every", "minute_seconds", "threads"):
        _positive(name.replace("_", "-"), getattr(args, name))
    _positive("listening-pass-seconds", args.listening_pass_seconds)
    for name in ("stream_seconds", "validation_samples", "listening_pass"):
        _positive(name.replace("_", "-"), getattr(args, name), allow_zero=True)
    s = quick_settings() if args.quick else QualityBenchSettings()
    overrides = {
        k: getattr(args, k)
        for k in (
            "samples",
            "seconds",
            "base_steps",
            "stream_seconds",
            "minute_seconds",
            "validation_samples",
            "listening_pass",
            "listening_pass_seconds",
            "threads",
        )
        if getattr(args, k) is not None
    }
    if args.systems:
        overrides["systems"] = _system_list(args.systems, SYSTEM_NAMES, "unknown system")
    if args.stream_systems:
        from model_core.bench.systems import STREAMING

        overrides["stream_systems"] = _system_list(
            args.stream_systems, STREAMING, "--stream-systems: does not stream:"
        )
    if args.checkpoint:
        overrides["checkpoint"] = args.checkpoint
    if args.judges:
        if not Path(args.judges).is_dir():
            raise UsageError(f"--judges {args.judges}: not a folder")
        overrides["judges_dir"] = args.judges
    return replace(s, seed=args.seed, preset=args.preset, base_every=args.base_every, **overrides)


def _system_list(value: str, allowed: tuple[str, ...], problem: str) -> tuple[str, ...]:
    """A comma-separated list of system names, each one of `allowed`."""
    chosen = tuple(x.strip() for x in value.split(",") if x.strip())
    bad = [x for x in chosen if x not in allowed]
    if bad or not chosen:
        raise UsageError(
            f"{problem} {bad[0] if bad else '(none)'!r}; expected some of {','.join(allowed)}"
        )
    return chosen


def output_paths(args: argparse.Namespace) -> dict[str, Path | None]:
    """--json/--md/--png checked before any work (suffix, not a folder)."""
    from model_core.cli.perform import check_output_path

    return {
        k: check_output_path(getattr(args, k), f".{k}") if getattr(args, k) else None
        for k in ("json", "md", "png")
    }


def check_judges(judges_dir: str | None) -> None:
    """No trained judges -> a usage error before any work."""
    from model_core.bench.judges import load_judges

    try:
        load_judges(Path(judges_dir) if judges_dir else None)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def write_outputs(paths: dict, result: dict, text: str, plot) -> None:
    """The JSON (keys starting with "_" left out), the Markdown `text` and `plot(result,
    path)`'s figure where asked for; then the text and where each file went."""
    from model_core.cli.perform import write_json

    if paths["json"]:
        write_json(paths["json"], {k: v for k, v in result.items() if not k.startswith("_")})
    if paths["md"]:
        paths["md"].parent.mkdir(parents=True, exist_ok=True)
        paths["md"].write_text(text)
    if paths["png"]:
        paths["png"].parent.mkdir(parents=True, exist_ok=True)
        plot(result, paths["png"])
    print(text, end="")
    for label, path in paths.items():
        if path:
            print(f"  {label}: {path}")


def run_quality(args: argparse.Namespace) -> int:
    from model_core.cli.perform import load_config

    settings = quality_settings(args)
    load_config(args.preset, args.checkpoint)  # unknown preset / bad checkpoint -> usage error
    paths = output_paths(args)
    check_judges(settings.judges_dir)
    from model_core.bench.quality import run_quality_bench
    from model_core.bench.quality_report import markdown_table, plot_quality, validation_table

    result = run_quality_bench(settings)
    text = markdown_table(result) + "\n" + validation_table(result["validation"])
    write_outputs(paths, result, text, plot_quality)
    return 0


def run_train_judges(args: argparse.Namespace) -> int:
    for name in ("probe_frames", "probe_epochs", "embed_steps", "threads"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.embed_size < 32:
        raise UsageError(f"--embed-size must be >= 32, got {args.embed_size}")
    from model_core.bench.judges import JUDGES_DIR, load_judges, save_judges
    from model_core.bench.judges_train import JudgeTrainSettings, train_judges

    out = Path(args.out) if args.out else JUDGES_DIR
    keep = None
    if args.only:
        try:
            keep = load_judges(out)
        except FileNotFoundError:
            raise UsageError(
                f"--only {args.only}: no judges in {out} to keep the other one from"
            ) from None
    judges = train_judges(
        JudgeTrainSettings(
            seed=args.seed,
            probe_frames=args.probe_frames,
            probe_epochs=args.probe_epochs,
            embed_steps=args.embed_steps,
            embed_size=args.embed_size,
            hard_negatives=not args.no_hard_negatives,
            threads=args.threads,
        ),
        log=lambda m: print(m, file=sys.stderr, flush=True),
        only=args.only,
        keep=keep,
    )
    for path in save_judges(judges, out):
        print(f"  saved: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


# For `model_core.cli.bench.BENCHMARKS`.
REGISTRARS = (register_quality, register_train_judges)
