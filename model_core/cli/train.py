"""`lpm train STAGE`: one curriculum stage; `lpm train all`: the whole curriculum.

lpm train base --preset tiny --data out/data --init out/ckpt/vae/final --out out/ckpt/base
lpm train all --preset tiny --work out/train --ship model_core/assets/checkpoints/tiny
"""

from __future__ import annotations

import argparse
import json
import sys

from model_core.cli.errors import UsageError
from model_core.train.config import recipe_minutes

STAGE_NAMES = (
    "vae",
    "vae-stream",
    "base",
    "ode",
    "dmd-off",
    "dmd-on",
    "refiner",
    "dpo",
    "vae-decoder",
    "mouth-head",
    "mouth-painter",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a curriculum stage (or all of them)",
        description="Train one stage of the LPM curriculum, or `all` of them in order.",
    )
    p.add_argument(
        "stage",
        metavar="STAGE",
        help=f"{', '.join(STAGE_NAMES)}, all, mouth-reader (for the mouth_read loss of "
        "ode, dmd-off, dmd-on, refiner and vae-decoder: --data, --out PATH.safetensors), or "
        "online-latents (a checkpoint's Online model streamed over training windows, for "
        "vae-decoder's gen_latents: --init, --data, --out PATH.pt, --option windows=N)",
    )
    p.add_argument("--preset", default="tiny", help="model preset (default tiny)")
    p.add_argument(
        "--data",
        help="curated shards, a `lpm data synth` folder, s3://..., or "
        "'synthetic' (built-in toy clips)",
    )
    p.add_argument("--out", help="checkpoint folder or s3://bucket/prefix (one stage)")
    p.add_argument("--init", help="checkpoint the stage starts from (the previous stage's final/)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the tiny recipe's)")
    p.add_argument("--batch", type=int, help="batch size (default: the tiny recipe's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the tiny recipe's)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="N")
    p.add_argument("--max-minutes", type=float, help="stop (checkpointed) after this long")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the weights (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="objective option, e.g. beta=500 (repeatable)",
    )
    p.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change the preset's architecture for a model started from random weights, e.g. "
        "vae.base_channels=24 vae.channel_mults=[2,3,6] (repeatable; not with --init, whose "
        "checkpoint brings its own)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g = p.add_argument_group("all")
    g.add_argument("--work", help="work folder of `all` (data, checkpoints, report)")
    g.add_argument(
        "--synth-minutes",
        type=float,
        default=10.0,
        help="minutes of performer footage `all` synthesizes (default 10)",
    )
    g.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every stage's steps (e.g. 0.02 for a smoke run)",
    )
    g.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every stage's time budget (the tiny recipe's stages sum to "
        f"{recipe_minutes():g} min)",
    )
    g.add_argument("--ship", help="write the final model here as float16")
    g.add_argument("--stages", help="comma-separated subset of stages for `all`")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="change the recipe of one stage of `all`: steps, batch, lr, ema, minutes or an "
        "objective option, e.g. base.lr=2e-4 base.minutes=40 (repeatable); with --init, "
        "`all` continues a model (the first stage starts from that checkpoint)",
    )
    p.set_defaults(func=run, _prog=p.prog)


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--option needs KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _overrides(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        stage, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise UsageError(f"--set needs STAGE.KEY=VALUE, got {item!r}")
        if stage not in STAGE_NAMES:
            raise UsageError(f"unknown stage {stage!r} in --set {item}")
        out.setdefault(stage, {}).update(_options([f"{key}={value}"]))
    from model_core.train.curriculum import RECIPE_KEYS

    for stage, values in out.items():
        for key in RECIPE_KEYS:
            if key in values and (
                not isinstance(values[key], int | float)
                or isinstance(values[key], bool)
                or values[key] < 0
                or (values[key] == 0 and key != "ema")
            ):
                raise UsageError(f"--set {stage}.{key} must be a positive number")
    return out


def model_config(args: argparse.Namespace):
    """The preset's config with the --arch changes (None without any), checked by building
    the model on the meta device (nothing is allocated)."""
    if not args.arch:
        return None
    if args.init:
        raise UsageError("--arch changes a new model; the --init checkpoint brings its own")
    import torch

    from model_core.config import LPMConfig
    from model_core.model import build_model

    changes = {}
    for item in args.arch:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--arch needs SECTION.KEY=VALUE, got {item!r}")
        changes[key] = _options([f"x={value}"])["x"]
    try:
        cfg = LPMConfig.preset(args.preset).with_overrides(changes)
        build_model(cfg, device=torch.device("meta"))
    except (ValueError, TypeError, RuntimeError) as e:
        raise UsageError(f"--arch: {e}") from None
    return cfg


def run(args: argparse.Namespace) -> int:
    if args.stage not in (*STAGE_NAMES, "all", "mouth-reader", "online-latents"):
        raise UsageError(
            f"unknown stage {args.stage!r}; choose from {', '.join(STAGE_NAMES)}, all, "
            "mouth-reader or online-latents"
        )
    from model_core.config import PRESETS

    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    for name in ("steps", "batch", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    options = _options(args.option)
    cfg = model_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    if args.stage == "all":
        return _run_all(args, cfg)
    if args.stage == "mouth-reader":
        return _run_mouth_reader(args)
    if args.stage == "online-latents":
        return _run_online_latents(args, options)
    if not args.out:
        raise UsageError("--out is required (a folder or s3://bucket/prefix)")
    _check_data(args.data)
    from model_core.train.config import TINY_CURRICULUM, TrainConfig
    from model_core.train.loop import train

    recipe = TINY_CURRICULUM[args.stage]
    tc = TrainConfig(
        stage=args.stage,
        out=args.out,
        data=args.data,
        init=args.init,
        preset=args.preset,
        steps=args.steps or recipe["steps"],
        batch=args.batch or recipe["batch"],
        lr=args.lr or recipe["lr"],
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        seed=args.seed,
        ema=args.ema if args.ema is not None else recipe.get("ema", 0.0),
        options=recipe.get("options", {}) | options,
        progress=not args.no_progress,
    )
    if args.init is None and args.stage != "vae":
        print(
            f"lpm train {args.stage}: note: no --init, starting from random weights",
            file=sys.stderr,
        )
    from model_core.train.objectives import OptionError

    try:
        summary = train(tc, model_config=cfg)
    except OptionError as e:
        raise UsageError(f"{args.stage}: {e}") from None
    print(json.dumps(summary))
    return 0


def _check_data(data: str | None) -> None:
    if not data:
        raise UsageError("--data is required (a data folder, s3://..., or 'synthetic')")
    if data != "synthetic" and not data.startswith("s3://"):
        from pathlib import Path

        if not Path(data).is_dir():
            raise UsageError(f"--data {data}: no such folder")


def _run_mouth_reader(args: argparse.Namespace) -> int:
    """`lpm train mouth-reader --data D --out reader.safetensors`: the frozen mouth reader
    whose reading of the decoded mouth the vae-decoder stage's `mouth_read` loss uses."""
    _check_data(args.data)
    if not args.out or not args.out.endswith(".safetensors"):
        raise UsageError("--out must name the reader's file, PATH.safetensors")
    from model_core.config import LPMConfig
    from model_core.train.mouth_reader import train_reader_file

    try:
        metrics = train_reader_file(
            args.data,
            LPMConfig.preset(args.preset),
            args.out,
            progress=not args.no_progress,
            steps=args.steps or 3000,
            batch=args.batch or 64,
            lr=args.lr or 2e-3,
            seed=args.seed,
        )
    except ValueError as e:
        raise UsageError(f"mouth-reader: {e}") from None
    print(json.dumps({"stage": "mouth-reader", "out": args.out, **metrics}))
    return 0


def _run_online_latents(args: argparse.Namespace, options: dict) -> int:
    """`lpm train online-latents --init CKPT --data D --out FILE.pt`: the checkpoint's Online
    model streamed over up to `windows` training windows (the vae-decoder stage's
    `gen_latents`)."""
    from pathlib import Path

    _check_data(args.data)
    if not args.init:
        raise UsageError("--init is required: the checkpoint whose Online model is streamed")
    if not Path(args.init).is_dir():
        raise UsageError(f"--init {args.init}: no such checkpoint folder")
    if not args.out or not args.out.endswith(".pt"):
        raise UsageError("--out must name the file of latents, PATH.pt")
    unknown = set(options) - {"windows", "seconds", "picture"}
    if unknown:
        raise UsageError(
            f"online-latents takes --option windows=, seconds= and picture=; got "
            f"{', '.join(sorted(unknown))}"
        )
    from model_core.train.gen_latents import build_online_latents

    try:
        summary = build_online_latents(
            args.init,
            args.data,
            args.out,
            windows=int(options.get("windows", 256)),
            seconds=int(options.get("seconds", 2)),
            batch=args.batch or 4,
            picture=str(options.get("picture", "rest")),
            seed=args.seed,
            progress=not args.no_progress,
        )
    except ValueError as e:
        raise UsageError(f"online-latents: {e}") from None
    print(json.dumps({"stage": "online-latents", **summary}))
    return 0


def _run_all(args: argparse.Namespace, cfg=None) -> int:
    if not args.work:
        raise UsageError("`all` needs --work DIR (data, checkpoints and report go there)")
    if args.scale <= 0:
        raise UsageError("--scale must be positive")
    from model_core.train.curriculum import run_curriculum

    overrides = _overrides(args.set)
    if args.init and not args.init.startswith("s3://"):
        from pathlib import Path

        if not Path(args.init).is_dir():
            raise UsageError(f"--init {args.init}: no such checkpoint folder")
    stages = None
    if args.stages:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        bad = [s for s in stages if s not in STAGE_NAMES]
        if bad:
            raise UsageError(f"unknown stage {bad[0]!r} in --stages")
    from model_core.train.objectives import OptionError

    try:
        report = run_curriculum(
            args.work,
            args.preset,
            data=args.data,
            synth_minutes=args.synth_minutes,
            time_scale=args.time_scale,
            scale=args.scale,
            stages=stages,
            ship=args.ship,
            progress=not args.no_progress,
            workers=args.threads or 1,
            log=lambda s: print(s, file=sys.stderr, flush=True),
            init=args.init,
            overrides=overrides,
            model_config=cfg,
            arch=list(args.arch),
        )
    except OptionError as e:  # a stage's options, checked as that stage starts
        raise UsageError(str(e)) from None
    print(json.dumps(report))
    return 0
