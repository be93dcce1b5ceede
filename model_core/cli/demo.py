"""`lpm demo`: the bundled character, Lumi, in a short conversation, rendered to MP4.

The user's question (listening track) plays first, then Lumi answers (speaking track): the
same streaming path as `lpm perform`, with no files of your own needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model_core.cli import perform as perform_cmd

TAIL_S = 0.5  # let the video run on a little after the last word


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="render the bundled character in a short conversation (no files needed)",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    perform_cmd.add_model_arguments(p)
    p.add_argument("-o", "--output", default="out/demo.mp4", metavar="OUT.mp4")
    p.add_argument("--stats-json", metavar="PATH", help="write per-chunk timings and totals")
    p.set_defaults(func=run, _prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from model_core.sample import load_sample

    perform_cmd.resolve_checkpoint(args)
    config = perform_cmd.load_config(args.preset, args.checkpoint)
    output = perform_cmd.check_output_path(args.output, ".mp4")
    stats_path = (
        perform_cmd.check_output_path(args.stats_json, ".json") if args.stats_json else None
    )
    sample = load_sample(config)
    inputs = perform_cmd.PerformInputs(
        global_image=sample.global_image,
        body=sample.body,
        face=sample.face,
        speak=sample.speak,
        listen=sample.listen,
        text=sample.text,
        seconds=sample.seconds + TAIL_S,
    )
    pipe = perform_cmd.build_pipeline(args)
    stats = perform_cmd.perform(pipe, inputs, output)
    if stats_path:
        perform_cmd.write_json(stats_path, stats)
    weights = (
        f"weights from {args.checkpoint}" if args.checkpoint else "randomly initialised weights"
    )
    print(perform_cmd.describe_result(output, stats))
    print(
        f"  character: {sample.name}, 1 portrait + {len(sample.body)} body views "
        f"({', '.join(sample.body)}) + {len(sample.face)} expressions ({', '.join(sample.face)})\n"
        f"  model: preset {config.name}, {config.video.width}x{config.video.height}, {weights}\n"
        f'  audio: the user asks "{sample.listen_line}", then {sample.name} answers '
        f'"{sample.speak_line}"\n'
        f"  play it: ffplay {output}  (or open it in any video player)"
    )
    shipped = perform_cmd.SHIPPED_CHECKPOINTS / config.name
    if args.checkpoint and Path(args.checkpoint).resolve() == shipped.resolve():
        print(
            f"  note: the shipped '{config.name}' model was trained for about 5.7 h on 2 CPU "
            "cores (docs/training.md): expect a soft copy of the portrait (head, hair and "
            "clothes where the picture has them, blurred) whose lower face the mouth "
            "painter darkens in time with its voice (no drawn mouth shape yet); its "
            "measured quality is in the README (LPM-Bench-mini)."
        )
    if not args.checkpoint:
        print(
            f"  note: no trained checkpoint for '{config.name}' was found in "
            f"{perform_cmd.SHIPPED_CHECKPOINTS}, so these are the frames of an untrained model "
            "(noise). Ship one with `lpm train all --preset tiny --ship "
            "model_core/assets/checkpoints/tiny` or pass --checkpoint."
        )
    return 0
