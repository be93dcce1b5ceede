"""`lpm train all`: the whole curriculum, from synthetic footage to the shipped checkpoint.

    data synth -> (curate) -> vae -> vae-stream -> base -> ode -> dmd-off -> dmd-on
        -> refiner -> dpo -> vae-decoder -> ship

Each stage starts from the previous stage's `final/` checkpoint and writes its own folder
under `<work>/ckpt/<stage>`; a finished stage (its `final/stage.json` exists) is skipped and an
interrupted one resumes from its last checkpoint, so re-running the command continues where
it stopped. Per-stage summaries (steps, wall time, first and last loss) accumulate in
`<work>/curriculum.json`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_core.config import LPMConfig
from model_core.train.config import TINY_CURRICULUM, TINY_MINUTES, TrainConfig
from model_core.train.objectives import STAGES

# Footage for the tiny recipe: short recordings, one per identity, so that 12 minutes hold
# 72 characters (the model must learn to copy appearance from the references, not memorise
# a handful of faces or palettes; the bench's characters are all held out).
TINY_SYNTH = dict(recording_seconds=10.0, recordings_per_identity=1)


def synthesize_data(out: Path, minutes: float, seed: int = 0, workers: int = 1, log=print) -> Path:
    """`lpm data synth` through the data package (skips recordings already on disk)."""
    from model_core.data.performer.synth import SynthPlan, synthesize

    log(f"[synth] {minutes} min of performer footage -> {out}")
    plan = SynthPlan(out=out, minutes=minutes, seed=seed, workers=workers, **TINY_SYNTH)
    summary = synthesize(plan)
    log(f"[synth] {json.dumps(summary)}")
    return out


def curate_data(raw: Path, out: Path, log=print) -> Path:
    """The data engineer's curation when it is installed; otherwise train on the raw synth
    folder, whose windows `RecordingClipSource` filters with the ground truth."""
    try:
        from model_core.data.curation.pipeline import curate  # type: ignore[import-not-found]
    except ImportError:
        log(
            "[curate] curation pipeline not available: training on raw recordings, "
            "filtered by ground truth"
        )
        return raw
    log(f"[curate] {raw} -> {out}")
    result = curate(str(raw), str(out))
    log(f"[curate] {json.dumps(result.summary)}")
    return out


# What `overrides` (`lpm train all --set`) may change besides objective options; `windows`
# is how many windows a latent-cache stage encodes (TrainConfig.max_windows unless set).
RECIPE_KEYS = ("steps", "batch", "lr", "ema", "minutes", "windows")


def run_curriculum(
    work: str | Path,
    preset: str = "tiny",
    data: str | None = None,
    synth_minutes: float = 10.0,
    scale: float = 1.0,
    minutes: dict[str, float] | None = None,
    time_scale: float = 1.0,
    stages: list[str] | None = None,
    ship: str | Path | None = None,
    progress: bool = True,
    workers: int = 1,
    log: Callable[[str], None] = print,
    init: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    model_config: LPMConfig | None = None,
    arch: list[str] | None = None,
) -> dict[str, Any]:
    """Synthesize and curate (unless `data` is given), then train `stages` in order, each
    from the previous one's `final/` (the first from `init`, or random weights); stages
    already finished in `work` are skipped and an interrupted one resumes. `overrides` sets
    recipe values per stage: {"base": {"lr": 2e-4, "minutes": 40}}; keys other than steps,
    batch, lr, ema, minutes and windows are objective options. `model_config` is the architecture of
    a model started from random weights (the preset's when None; `arch` is how it was asked
    for, recorded in the report); a checkpoint `init` brings its own."""
    from model_core.train.loop import train

    overrides = overrides or {}
    unknown = [st for st in overrides if st not in STAGES]
    if unknown:
        raise ValueError(f"overrides for unknown stage {unknown[0]!r}")

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    report_path = work / "curriculum.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"stages": {}}
    if data is None:
        t0 = time.perf_counter()
        raw = synthesize_data(work / "data", synth_minutes, workers=workers, log=log)
        data = str(curate_data(raw, work / "curated", log=log))
        report.setdefault("data_s", round(time.perf_counter() - t0, 1))
    budget = {k: v * time_scale for k, v in (minutes or TINY_MINUTES).items()}
    report |= {
        "preset": preset,
        "data": data,
        "scale": scale,
        "time_scale": time_scale,
        "minutes": budget,
        "init": init,
        "overrides": overrides,
        "arch": arch or [],
    }
    for stage in stages or list(STAGES):
        out = work / "ckpt" / stage
        done = out / "final" / "stage.json"
        if done.exists():
            log(f"[{stage}] done already: {json.loads(done.read_text())['steps']} steps")
            init = str(out / "final")
            continue
        recipe = dict(TINY_CURRICULUM[stage])
        recipe["options"] = dict(recipe.get("options", {}))
        minutes_of_stage = budget.get(stage)
        for key, value in overrides.get(stage, {}).items():
            if key == "minutes":
                minutes_of_stage = float(value)
            elif key in RECIPE_KEYS:
                recipe[key] = value
            else:
                recipe["options"][key] = value
        if recipe["options"].get("mouth_read", 0) and not recipe["options"].get("mouth_reader"):
            recipe["options"]["mouth_reader"] = str(
                _mouth_reader(work, data, preset, report, progress, log)
            )
        tc = TrainConfig(
            stage=stage,
            out=str(out),
            data=data,
            init=init,
            preset=preset,
            steps=max(2, int(recipe["steps"] * scale)),
            batch=recipe["batch"],
            lr=recipe["lr"],
            ema=recipe.get("ema", 0.0),
            lr_schedule="cosine",
            options=recipe["options"],
            checkpoint_every=max(1, min(50, int(recipe["steps"] * scale) // 4)),
            resume=True,
            max_minutes=minutes_of_stage,
            progress=progress,
            latent_cache=str(work / "latents.pt"),
            max_windows=int(recipe.get("windows", TrainConfig.max_windows)),
        )
        log(
            f"[{stage}] {tc.steps} steps, batch {tc.batch}, lr {tc.lr}, "
            f"budget {tc.max_minutes} min, init {init}"
        )
        summary = train(tc, model_config=model_config)
        log(f"[{stage}] {json.dumps(summary)}")
        report["stages"][stage] = summary
        report_path.write_text(json.dumps(report, indent=1))
        init = str(out / "final")
    if ship is not None and init is not None:
        report["shipped"] = ship_checkpoint(init, ship, log=log)
        report_path.write_text(json.dumps(report, indent=1))
    return report


def _mouth_reader(work: Path, data: str, preset: str, report: dict, progress: bool, log) -> Path:
    """The frozen mouth reader a `mouth_read` loss needs, trained once per work folder on
    the curriculum's own data (`lpm train mouth-reader`)."""
    from model_core.train.mouth_reader import train_reader_file

    path = work / "mouth_reader.safetensors"
    if not path.exists():
        log(f"[mouth-reader] training on {data} -> {path}")
        metrics = train_reader_file(data, LPMConfig.preset(preset), path, progress)
        report["mouth_reader"] = metrics
        log(f"[mouth-reader] {json.dumps(metrics)}")
    return path


def ship_checkpoint(
    src: str | Path, dest: str | Path, log=print, decoder_from: str | Path | None = None
) -> dict[str, Any]:
    """The final model as float16 safetensors, loadable by `LPMPipeline.load`: the Online
    model (what serving loads) in model.safetensors, the Base teacher beside it.

    `decoder_from`: take the VAE decoder from another checkpoint (a `vae-decoder` run made
    beside the generators' stages). The decoder only reads latents, so this is sound only
    when both checkpoints share one encoder and its latent statistics, which is checked
    weight by weight."""
    import torch

    from model_core.pipeline import LPMPipeline

    pipe = LPMPipeline.load(src)
    if decoder_from is not None:
        donor = LPMPipeline.load(decoder_from, with_base=False)
        _check_same_encoder(pipe, donor, src, decoder_from)
        pipe.model.vae.decoder.load_state_dict(donor.model.vae.decoder.state_dict())
        log(f"[ship] VAE decoder from {decoder_from}")
    pipe.version = f"{pipe.config.name}-trained"
    path = pipe.save(dest, dtype=torch.float16, split_base=True)
    sizes = {f.name: f.stat().st_size for f in Path(path).iterdir()}
    online = sizes.get("model.safetensors", 0)
    log(
        f"[ship] {path}: Online model {online / 2**20:.1f} MiB, all {sum(sizes.values()) / 2**20:.1f} MiB"
    )
    shipped = {"path": str(path), "bytes": sum(sizes.values()), "files": sizes}
    return shipped | ({"decoder_from": str(decoder_from)} if decoder_from is not None else {})


def _check_same_encoder(pipe, donor, src, decoder_from) -> None:
    import torch

    from model_core.train.loop import encoder_state

    if pipe.config.vae != donor.config.vae:
        raise ValueError(f"{decoder_from}: its VAE's architecture is not that of {src}")
    theirs = encoder_state(donor.model.vae)
    for name, w in encoder_state(pipe.model.vae).items():
        if not torch.equal(w, theirs[name]):
            raise ValueError(
                f"{decoder_from}: its VAE encoder differs from that of {src} ({name}), so its "
                "decoder reads another latent space"
            )
