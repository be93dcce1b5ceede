"""`lpm model info`: parameter counts by part and FLOPs per 1-second chunk per stage.

Everything is built on the meta device, so even `lpm-17b` is counted without allocating a
single weight: a platform team can size GPUs from a laptop.
"""

from __future__ import annotations

import argparse
import json
import sys

from model_core.cli.errors import UsageError

PART_NOTES = {
    "vae": "causal 3D VAE, encoder + decoder",
    "trunk": "Online Backbone DiT (Wan2.1 layout), without its audio cross-attention",
    "audio": "audio encoder + the trunk's audio cross-attention layers",
    "text": "text encoder (0 for lpm-17b: its umT5-XXL is a frozen external model)",
    "references": "0 by design: references are VAE latents through the same patch embedder, "
    "told apart only by RoPE offsets",
    "refiner": "Online Refiner DiT, its own weights",
}
STAGE_NOTES = {
    "audio": "audio encoder on both tracks",
    "backbone": "denoising steps + one pass to refill the KV cache",
    "refiner": "one step",
    "vae": "streaming VAE decode of 24 frames",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser(
        "model", help="inspect model presets", description="Inspect model presets."
    )
    sub = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "info",
        help="parameter counts by part and FLOPs per 1-second chunk per stage",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    p.add_argument("--preset", required=True, help="tiny, small or lpm-17b")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run, _prog=p.prog)


def model_info(preset: str) -> dict:
    """Params by part and steady-state FLOPs per 1 s chunk per stage, for a full reference set."""
    from model_core.bench.flops import online_chunk_flops
    from model_core.config import LPMConfig
    from model_core.model import build_model

    cfg = LPMConfig.preset(preset)
    model = build_model(cfg, device="meta", with_base=True)
    counts = model.param_counts()
    base = counts.pop("base_teacher", 0)
    total = counts.pop("total")
    model.base = None  # the teacher is not part of the Online chunk
    flops = online_chunk_flops(cfg, model=model)
    return {
        "preset": cfg.name,
        "video": {
            "width": cfg.video.width,
            "height": cfg.video.height,
            "fps": cfg.video.fps,
            "chunk_frames": cfg.video.chunk_frames,
        },
        "tokens_per_chunk": cfg.tokens_per_chunk,
        "params": counts,
        "params_total": total,
        "params_base_teacher": base,
        "params_notes": PART_NOTES,
        "flops_per_chunk": flops,
        "flops_per_chunk_total": sum(flops.values()),
        "flops_assumptions": (
            f"steady state (KV window of {cfg.online.window_chunks} chunks full), full reference "
            f"set (1 global, {cfg.refs.max_body} body, {cfg.refs.max_face} face), "
            f"{cfg.text.max_tokens} text tokens, {cfg.online.backbone_steps} Backbone steps; "
            "counted by torch.utils.flop_counter on the meta device (matmul, conv, attention; "
            "elementwise ops excluded)"
        ),
    }


def _human(n: float, unit: str = "") -> str:
    # Parameters read as B (billions); FLOPs use SI prefixes (GFLOP, TFLOP).
    giga = " G" if unit else " B"
    for scale, suffix in ((1e12, " T"), (1e9, giga), (1e6, " M"), (1e3, " k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def format_info(info: dict) -> str:
    v = info["video"]
    lines = [
        f"LPM preset {info['preset']}: {v['width']}x{v['height']} at {v['fps']} fps, "
        f"1-second chunks of {v['chunk_frames']} frames ({info['tokens_per_chunk']} tokens)",
        "",
        "Parameters (Online system, built on the meta device)",
    ]
    for part, n in info["params"].items():
        lines.append(f"  {part:<11}{_human(n):>10}   {PART_NOTES.get(part, '')}")
    lines.append(f"  {'total':<11}{_human(info['params_total']):>10}   ({info['params_total']:,})")
    lines.append(
        f"  {'base':<11}{_human(info['params_base_teacher']):>10}   "
        "Base teacher (offline renderer), not in the total"
    )
    lines += ["", "FLOPs per 1-second chunk"]
    for stage, n in info["flops_per_chunk"].items():
        lines.append(f"  {stage:<11}{_human(n, 'FLOP'):>13}   {STAGE_NOTES.get(stage, '')}")
    lines.append(f"  {'total':<11}{_human(info['flops_per_chunk_total'], 'FLOP'):>13}")
    lines.append(f"  ({info['flops_assumptions']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from model_core.config import PRESETS

    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    info = model_info(args.preset)
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_info(info))
    return 0
