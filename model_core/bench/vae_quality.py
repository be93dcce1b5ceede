"""`lpm bench vae`: how much of the footage a model's VAE lets through.

Every frame a generator draws comes out of the VAE's decoder, so the VAE's round trip is the
ceiling of every other system (LPM-Bench-mini's `vae_roundtrip` row). This bench looks at that
ceiling closely, for one or several checkpoints on the same held-out samples, so a VAE recipe
can be chosen before hours of Base training are spent in its latent space:

- PSNR over the whole frame, over the head region the judges read, and per second of the
  stream (a causal VAE that degrades as its temporal caches fill shows it here);
- colour error: the frame-mean RGB of the round trip against the original's, in 8-bit levels
  (a codec that learnt its training characters' palettes repaints held-out clothes);
- mouth r: the FaceProbe's mouth opening on the round trip against on the original (Pearson,
  samples where the mouth moves): how much of the mouth survives;
- lip sync, mouth motion and identity exactly as LPM-Bench-mini computes them, with ground
  truth beside (mouth motion: how far the mouth moves, which a correlation cannot see);
- the round trip's cost in seconds per second of video.

The footage is streamed as serving streams it: frame 0 alone, then `chunk`-frame pushes
through the stream encoder and decoder. A decoder that hears the character's voice
(`VAEConfig.decoder_audio`) gets the sample's speaking track, and is run a second time on
silence ("LABEL (silent)"): the gap between the two rows is what the voice adds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model_core.bench.analysis import reference_embeddings
from model_core.bench.judges import Judges, load_judges, probe_crop
from model_core.bench.metrics.identity import frame_similarity, identity_scores
from model_core.bench.metrics.lip_sync import lip_sync_score, pearson
from model_core.bench.metrics.mouth_motion import mouth_motion
from model_core.bench.scenarios import FPS, ScenarioRenderer, scenario_specs
from model_core.bench.systems import vae_roundtrip
from model_core.progress import progress_bar

SHIPPED = "shipped"
RANDOM = "random"
MOUTH_MOVES = 0.05  # probe mouth-opening std below which a sample's mouth is taken as still


@dataclass
class VAEBenchSettings:
    checkpoints: tuple[str, ...] = (SHIPPED,)  # folders, "shipped" or "random" (random init)
    samples: int = 40
    seconds: int = 4
    seed: int = 0
    preset: str = "tiny"
    chunk: int = 24  # frames per stream push after frame 0
    threads: int | None = None
    judges_dir: str | None = None
    allow_untrained_judges: bool = False  # tests only
    progress: bool | None = None  # None: a bar only on a terminal


def load_vae(checkpoint: str, preset: str, seed: int = 0):
    """The VAE of a checkpoint folder, of the shipped checkpoint, or a random one."""
    import torch

    from model_core.bench.quality import SHIPPED_CHECKPOINT
    from model_core.pipeline import LPMPipeline

    path = (
        None
        if checkpoint == RANDOM
        else str(SHIPPED_CHECKPOINT if checkpoint == SHIPPED else checkpoint)
    )
    torch.manual_seed(seed)
    pipe = LPMPipeline.build(preset=preset, checkpoint=path, seed=seed, with_base=False)
    return pipe.model.vae.eval()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of the same shape (capped at 99 for identical ones)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse < 1e-10 else float(10 * np.log10(255.0**2 / mse))


def colour_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of the per-frame mean RGB of (T, H, W, 3) frames, in levels."""
    return float(np.abs(a.mean(axis=(1, 2)) - b.mean(axis=(1, 2))).mean())


def compare(
    frames: np.ndarray,
    original: np.ndarray,
    judges: Judges,
    ref_emb: np.ndarray,
    sample,
    gt_mouth: np.ndarray,
) -> dict:
    """Round-trip `frames` against the `original` footage of `sample`."""
    mouth = judges.probe.predict(frames)["mouth_open"]
    moves = float(gt_mouth.std()) >= MOUTH_MOVES
    speaking = sample.state == "speaking"
    sim = frame_similarity(judges.embedder.embed(frames), ref_emb)
    return {
        "psnr": psnr(frames, original),
        "psnr_head": psnr(probe_crop(frames), probe_crop(original)),
        "psnr_by_second": [
            psnr(frames[a : a + FPS], original[a : a + FPS]) for a in range(0, len(frames), FPS)
        ],
        "colour_error": colour_error(frames, original),
        "mouth_r": pearson(mouth.astype(np.float64), gt_mouth.astype(np.float64))
        if moves
        else None,
        "lip_sync": lip_sync_score(mouth, sample.speech_energy, speaking),
        "mouth_motion": mouth_motion(mouth, sample.mouth_open, speaking),
        "identity": identity_scores(sim, sample.head_yaw)["identity"],
    }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(per_sample: list[dict]) -> dict:
    out = {
        k: _mean(m[k] for m in per_sample)
        for k in ("psnr", "psnr_head", "colour_error", "mouth_r", "lip_sync", "identity")
    }
    out["mouth_motion"] = _mean(m.get("mouth_motion") for m in per_sample)
    seconds = max((len(m.get("psnr_by_second", [])) for m in per_sample), default=0)
    out["psnr_by_second"] = [
        _mean(m["psnr_by_second"][k] for m in per_sample if len(m.get("psnr_by_second", [])) > k)
        for k in range(seconds)
    ]
    out["mouth_samples"] = sum(m.get("mouth_r") is not None for m in per_sample)
    out["lip_sync_samples"] = sum(m.get("lip_sync") is not None for m in per_sample)
    return out


def label_of(checkpoint: str) -> str:
    return checkpoint if checkpoint in (SHIPPED, RANDOM) else str(Path(checkpoint))


def run_vae_bench(s: VAEBenchSettings) -> dict:
    import torch

    if s.chunk < 4 or s.chunk % 4:
        raise ValueError(f"chunk must be a positive multiple of 4, got {s.chunk}")
    if s.threads:
        torch.set_num_threads(s.threads)
    t0 = time.perf_counter()
    judges = load_judges(Path(s.judges_dir) if s.judges_dir else None, s.allow_untrained_judges)
    labels = [label_of(c) for c in s.checkpoints]
    if len(set(labels)) != len(labels):
        raise ValueError(f"a checkpoint is named twice: {', '.join(labels)}")
    vaes = {label: load_vae(c, s.preset, s.seed) for label, c in zip(labels, s.checkpoints)}
    # A decoder that hears the voice is also run on silence: what the voice adds is the gap.
    passes = {}
    for label, vae in vaes.items():
        passes[label] = (vae, True)
        if vae.hears:
            passes[f"{label} (silent)"] = (vae, False)
    specs = scenario_specs(s.samples, s.seconds, s.seed)
    renderer = ScenarioRenderer()
    per_sample: dict[str, list[dict]] = {"ground_truth": [], **{k: [] for k in passes}}
    cost = dict.fromkeys(passes, 0.0)
    video_s = 0.0
    examples: dict[str, np.ndarray] = {}
    with (
        torch.no_grad(),
        progress_bar(
            len(specs) * (1 + len(passes)), "lpm bench vae", unit="pass", progress=s.progress
        ) as bar,
    ):
        for spec in specs:
            sample = renderer.render(spec)
            ref_emb = reference_embeddings(judges, sample)
            gt = sample.frames
            gt_mouth = judges.probe.predict(gt)["mouth_open"]
            sim = frame_similarity(judges.embedder.embed(gt), ref_emb)
            speaking = sample.state == "speaking"
            per_sample["ground_truth"].append(
                {
                    "sample": spec.index,
                    "kind": spec.kind,
                    "lip_sync": lip_sync_score(gt_mouth, sample.speech_energy, speaking),
                    "mouth_motion": mouth_motion(gt_mouth, sample.mouth_open, speaking),
                    "identity": identity_scores(sim, sample.head_yaw)["identity"],
                }
            )
            bar.update(1)
            video_s += len(gt) / FPS
            keep = not examples and spec.kind == "speaking" and float(gt_mouth.std()) >= MOUTH_MOVES
            if keep:
                examples["ground_truth"] = gt
                examples["_mouth"] = gt_mouth
            for label, (vae, hear) in passes.items():
                bar.set_postfix_str(f"{spec.name} {label}")
                t = time.perf_counter()
                frames = vae_roundtrip(vae, gt, chunk=s.chunk, speak=sample.speak if hear else None)
                cost[label] += time.perf_counter() - t
                m = compare(frames, gt, judges, ref_emb, sample, gt_mouth)
                per_sample[label].append({"sample": spec.index, "kind": spec.kind, **m})
                if keep:
                    examples[label] = frames
                bar.update(1)

    gt_summary = {
        k: _mean(m[k] for m in per_sample["ground_truth"])
        for k in ("lip_sync", "mouth_motion", "identity")
    }
    vae_results = {}
    for label in passes:
        summary = summarize(per_sample[label])
        for metric in ("lip_sync", "mouth_motion", "identity"):
            ref, got = gt_summary[metric], summary[metric]
            summary[f"{metric}_of_ground_truth"] = (
                got / ref if ref is not None and got is not None and abs(ref) > 1e-9 else None
            )
        summary["seconds_per_video_second"] = cost[label] / video_s if video_s else None
        vae_results[label] = summary
    result = {
        "bench": "lpm-bench-vae",
        "settings": {k: v for k, v in asdict(s).items() if k != "progress"},
        "judges": {"trained": judges.trained, **judges.info},
        "samples": len(specs),
        "ground_truth": gt_summary,
        "vaes": vae_results,
        "per_sample": per_sample,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if examples:
        result["_examples"] = examples  # frames for the figure; not written to JSON
    return result


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(result: dict) -> str:
    gt = result["ground_truth"]
    lines = [
        f"VAE round trip on {result['samples']} held-out samples "
        f"({result['settings']['seconds']} s each, streamed in "
        f"{result['settings']['chunk']}-frame chunks); ground truth: lip sync "
        f"{_fmt(gt['lip_sync'])}, mouth motion {_fmt(gt.get('mouth_motion'))}, "
        f"identity {_fmt(gt['identity'])}",
        "",
        "| VAE | PSNR (dB) | head PSNR | PSNR first -> last second | colour error (levels) "
        "| mouth r | lip sync (of GT) | mouth motion (of GT) | identity (of GT) | s per video s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, v in result["vaes"].items():
        by_s = [x for x in v["psnr_by_second"] if x is not None]
        trend = f"{by_s[0]:.1f} -> {by_s[-1]:.1f}" if by_s else "-"
        lines.append(
            f"| {label} | {_fmt(v['psnr'], '.2f')} | {_fmt(v['psnr_head'], '.2f')} | {trend} "
            f"| {_fmt(v['colour_error'], '.2f')} | {_fmt(v['mouth_r'])} "
            f"| {_fmt(v['lip_sync'])} ({_fmt(v['lip_sync_of_ground_truth'], '.0%')}) "
            f"| {_fmt(v['mouth_motion'])} ({_fmt(v['mouth_motion_of_ground_truth'], '.0%')}) "
            f"| {_fmt(v['identity'])} ({_fmt(v['identity_of_ground_truth'], '.0%')}) "
            f"| {_fmt(v['seconds_per_video_second'], '.3f')} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot_vae(result: dict, path: Path) -> None:
    """PSNR per second of stream for each VAE, and head crops of one speaking sample (ground
    truth, then each VAE) at its most and least open mouths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = result.get("_examples", {})
    rows = [k for k in examples if not k.startswith("_")]
    fig = plt.figure(figsize=(11, 3.2 + 1.3 * len(rows)))
    grid = fig.add_gridspec(1 + len(rows), 1, height_ratios=[2.4] + [1] * len(rows))
    ax = fig.add_subplot(grid[0])
    for label, v in result["vaes"].items():
        ys = v["psnr_by_second"]
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=label)
    ax.set_xlabel("second of the stream")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("VAE round trip, held-out footage")
    ax.legend(fontsize=7)
    if rows:
        mouth = examples["_mouth"]
        order = np.argsort(mouth)
        picks = sorted({*order[-4:].tolist(), *order[:2].tolist()})
        for r, label in enumerate(rows):
            crops = probe_crop(examples[label][picks])
            axr = fig.add_subplot(grid[1 + r])
            axr.imshow(np.concatenate(list(crops), axis=1), interpolation="nearest")
            axr.set_xticks([])
            axr.set_yticks([])
            axr.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
