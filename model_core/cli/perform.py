"""`lpm perform`: a reference set and audio tracks in, a streamed performance out as MP4.

Runs the Online pipeline exactly as a live session would (1 s of audio pushed, 24 frames
back) and writes H.264 video plus one AAC track, the mix of the speaking and listening audio.
All input is validated before the model is built, so bad input costs no model time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_core.cli.errors import UsageError

DESCRIPTION = __doc__.splitlines()[0].split(": ", 1)[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "perform",
        help="stream a character performance from images and audio to an MP4",
        description=DESCRIPTION,
        epilog="Example: lpm perform --ref-global me.png --speak hello.wav -o out/hello.mp4",
    )
    add_model_arguments(p)
    p.add_argument(
        "--ref-global",
        required=True,
        metavar="IMG",
        help="the picture the video should look like, framed as the video (head and shoulders)",
    )
    p.add_argument(
        "--ref-body",
        action="append",
        default=[],
        metavar="VIEW=IMG",
        help="body view (front, left, right, back); up to 4, repeatable",
    )
    p.add_argument(
        "--ref-face",
        action="append",
        default=[],
        metavar="EXPR=IMG",
        help="labelled facial expression (smile, frown, ...); up to 8, repeatable",
    )
    p.add_argument("--speak", required=True, metavar="WAV", help="the character's own voice")
    p.add_argument("--listen", metavar="WAV", help="the other party's voice (default: silence)")
    p.add_argument("--text", default="", help="caption / emotion / action prompt")
    p.add_argument(
        "--seconds",
        type=float,
        metavar="N",
        help="length of the video (default: the speaking track's length, rounded up)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    p.add_argument("--stats-json", metavar="PATH", help="write per-chunk timings and totals")
    p.set_defaults(func=run, _prog=p.prog)


SHIPPED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="checkpoint folder (default: the preset's shipped checkpoint in "
        "model_core/assets/checkpoints/ if there is one, else random weights)",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="ignore any shipped checkpoint and use random weights (cost is the same)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def resolve_checkpoint(args: argparse.Namespace) -> None:
    """Fill in the shipped checkpoint of the preset when none is given."""
    if args.checkpoint or getattr(args, "random_weights", False):
        return
    shipped = SHIPPED_CHECKPOINTS / args.preset
    if (shipped / "model.safetensors").is_file() and (shipped / "config.json").is_file():
        args.checkpoint = str(shipped)


@dataclass
class PerformInputs:
    """Everything `perform` needs, already loaded and validated."""

    global_image: np.ndarray
    body: dict[str, np.ndarray] = field(default_factory=dict)
    face: dict[str, np.ndarray] = field(default_factory=dict)
    speak: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    listen: np.ndarray | None = None
    text: str = ""
    seconds: float | None = None


def run(args: argparse.Namespace) -> int:
    resolve_checkpoint(args)
    config = load_config(args.preset, args.checkpoint)
    inputs = load_inputs(args, config)
    output = check_output_path(args.output, ".mp4")
    stats_path = check_output_path(args.stats_json, ".json") if args.stats_json else None
    pipe = build_pipeline(args)
    stats = perform(pipe, inputs, output)
    if stats_path:
        write_json(stats_path, stats)
    print(describe_result(output, stats))
    return 0


# --- validation (no model needed) ------------------------------------------------------------


def load_config(preset: str, checkpoint: str | None):
    """The config the model will have: the checkpoint's if given, else the preset's."""
    from model_core.config import LPMConfig

    if checkpoint:
        ckpt = Path(checkpoint)
        if not ckpt.exists():
            raise UsageError(f"--checkpoint {checkpoint}: no such folder")
        cfg_file, weights = ckpt / "config.json", ckpt / "model.safetensors"
        if not (cfg_file.is_file() and weights.is_file()):
            raise UsageError(
                f"--checkpoint {checkpoint}: not a checkpoint folder "
                "(needs model.safetensors and config.json)"
            )
        try:
            return LPMConfig.from_dict(json.loads(cfg_file.read_text())["config"])
        except (ValueError, TypeError, KeyError) as e:
            raise UsageError(f"--checkpoint {checkpoint}: unreadable config.json ({e})") from None
    try:
        return LPMConfig.preset(preset)
    except ValueError as e:
        raise UsageError(f"--preset: {e}") from None


def parse_labelled(
    items: list[str], flag: str, allowed: tuple[str, ...], limit: int
) -> dict[str, str]:
    """`VIEW=IMG` pairs -> {label: path}; too many, malformed, unknown or repeated -> UsageError."""
    kind = "body" if flag == "--ref-body" else "face"
    if len(items) > limit:
        raise UsageError(f"{flag}: at most {limit} {kind} references, got {len(items)}")
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        label = label.strip().lower()
        if not sep or not label or not path:
            raise UsageError(f"{flag} {item!r}: expected LABEL=IMAGE, e.g. {allowed[0]}=img.png")
        if label not in allowed:
            raise UsageError(
                f"{flag}: unknown {'view' if kind == 'body' else 'expression'} {label!r}; "
                f"choose from {', '.join(allowed)}"
            )
        if label in out:
            raise UsageError(f"{flag}: {label!r} given more than once")
        out[label] = path
    return out


def load_inputs(args: argparse.Namespace, config) -> PerformInputs:
    """Parse labels and counts first (cheap), then decode images and audio."""
    from model_core.media import MediaError, fit_image, load_image, read_audio

    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise UsageError(f"--seconds must be a positive number, got {args.seconds:g}")
    refs_cfg = config.refs
    body_paths = parse_labelled(args.ref_body, "--ref-body", refs_cfg.body_views, refs_cfg.max_body)
    face_paths = parse_labelled(
        args.ref_face, "--ref-face", refs_cfg.face_labels, refs_cfg.max_face
    )
    h, w = config.video.height, config.video.width
    fs = refs_cfg.face_size
    try:
        inputs = PerformInputs(
            global_image=fit_image(load_image(args.ref_global), h, w),
            body={k: fit_image(load_image(p), h, w) for k, p in body_paths.items()},
            face={k: fit_image(load_image(p), fs, fs) for k, p in face_paths.items()},
            speak=read_audio(args.speak, config.audio.sample_rate),
            listen=read_audio(args.listen, config.audio.sample_rate) if args.listen else None,
            text=args.text,
            seconds=args.seconds,
        )
    except MediaError as e:
        raise UsageError(str(e)) from None
    return inputs


def check_output_path(path: str, suffix: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise UsageError(f"{path}: output file must end in {suffix}")
    if out.is_dir():
        raise UsageError(f"{path}: is a folder, expected a {suffix} file name")
    parent = out.parent
    while not parent.exists():  # the writer creates missing folders; the nearest must be one
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: {parent} is not a folder")
    return out


def build_pipeline(args: argparse.Namespace, **overrides: Any):
    from model_core.pipeline import LPMPipeline

    try:
        return LPMPipeline.build(
            preset=args.preset,
            checkpoint=args.checkpoint,
            device=args.device,
            seed=args.seed,
            with_base=False,  # streaming needs only the Online model
            **overrides,
        )
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"cannot load the model: {e}") from None


# --- the streaming loop ----------------------------------------------------------------------


def perform(pipe, inputs: PerformInputs, output: Path, progress: bool | None = None) -> dict:
    """Stream `inputs` through `pipe` chunk by chunk into `output`; returns timing stats.

    `progress=None` shows the bar on a terminal and a plain line every 30 s off one.
    """
    from model_core.media import mix_tracks, open_mp4
    from model_core.pipeline import ReferenceImages
    from model_core.progress import progress_bar

    cfg = pipe.config
    sr, fps, chunk = cfg.audio.sample_rate, cfg.video.fps, cfg.video.chunk_frames
    spc = sr * chunk // fps  # audio samples per chunk (16000 for 1 s at 16 kHz)
    seconds = inputs.seconds or max(1, math.ceil(len(inputs.speak) / sr))
    n_frames = max(1, round(seconds * fps))
    n_chunks = math.ceil(n_frames / chunk)
    speak = inputs.speak
    listen = inputs.listen if inputs.listen is not None else np.zeros(0, np.float32)
    refs = ReferenceImages(global_image=inputs.global_image, body=inputs.body, face=inputs.face)
    try:
        pipe.validate_references(refs)
    except ValueError as e:
        raise UsageError(str(e)) from None

    chunks: list[dict] = []
    t0 = time.perf_counter()
    stream = pipe.start_stream(refs, text=inputs.text)
    start_s = time.perf_counter() - t0
    first_frame_s = None
    with (
        terminate_as_interrupt(),
        open_mp4(output, cfg.video.height, cfg.video.width, fps=fps, sample_rate=sr) as mp4,
        progress_bar(n_chunks, "perform", unit="s", progress=progress) as bar,
    ):
        for i in range(n_chunks):
            sp, li = _window(speak, i * spc, spc), _window(listen, i * spc, spc)
            t = time.perf_counter()
            res = stream.push(sp, li)
            wall = time.perf_counter() - t
            if first_frame_s is None:
                first_frame_s = time.perf_counter() - t0
            keep = min(chunk, n_frames - i * chunk)  # the last chunk may be cut to --seconds
            t = time.perf_counter()
            mp4.write(res.frames[:keep], mix_tracks(sp, li)[: keep * sr // fps])
            chunks.append(
                {
                    "index": i,
                    **{f"{k}_s": float(v) for k, v in res.timings.items()},
                    "compute_s": float(sum(res.timings.values())),
                    "push_wall_s": wall,
                    "write_s": time.perf_counter() - t,
                }
            )
            bar.update(1)
        frames_written = mp4.frames_written
    total = time.perf_counter() - t0
    stages = list(chunks[0].keys() - {"index", "compute_s", "push_wall_s", "write_s"})
    media_s = n_chunks * chunk / fps
    return {
        "output": str(output),
        "preset": cfg.name,
        "frames": frames_written,
        "fps": fps,
        "seconds": frames_written / fps,
        "chunks": n_chunks,
        "start_stream_s": start_s,
        "first_frame_s": first_frame_s,
        "wall_s": total,
        "compute_s": sum(c["compute_s"] for c in chunks),
        "rtf": sum(c["push_wall_s"] for c in chunks) / media_s,
        "rtf_per_stage": {
            k.removesuffix("_s"): sum(c[k] for c in chunks) / media_s for k in sorted(stages)
        },
        "per_chunk": chunks,
    }


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, `docker stop`) unwinds like Ctrl-C, so the temp MP4 is removed too.
    SIGINT is handled explicitly as well: a process started in the background by a
    non-interactive shell inherits SIGINT as ignored, and Ctrl-C must still work there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _window(track: np.ndarray, start: int, n: int) -> np.ndarray:
    """track[start:start + n], zero-padded past its end (silence after the last word)."""
    out = np.zeros(n, dtype=np.float32)
    part = track[start : start + n]
    out[: len(part)] = part
    return out


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def describe_result(output: Path, stats: dict) -> str:
    return (
        f"wrote {output}: {stats['frames']} frames ({stats['seconds']:.2f} s at {stats['fps']} fps, "
        f"H.264) + AAC audio (speaking and listening tracks mixed); real-time factor "
        f"{stats['rtf']:.2f}, first frame after {stats['first_frame_s']:.2f} s"
    )
