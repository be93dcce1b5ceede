"""`lpm bench vae`: the shipped VAE against a random one on the same held-out samples, the
metric helpers, and the command's output files and bad-input errors."""

import json

import numpy as np
import pytest

from model_core.bench.judges import JUDGES_DIR, PROBE_FILE
from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.vae_quality import (
    VAEBenchSettings,
    colour_error,
    markdown_table,
    plot_vae,
    psnr,
    run_vae_bench,
)
from model_core.cli import OneLineArgumentParser
from model_core.cli.bench_vae import REGISTRARS
from model_core.cli.errors import UsageError

needs_shipped = pytest.mark.skipif(
    not (SHIPPED_CHECKPOINT / "model.safetensors").exists()
    or not (JUDGES_DIR / PROBE_FILE).exists(),
    reason="no shipped checkpoint or judges",
)


def test_psnr_and_colour_error_on_known_frames():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    assert psnr(a, a) == 99.0
    b = np.clip(a.astype(np.int16) + 16, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-5)
    flat = np.full((2, 4, 4, 3), 100, np.uint8)
    assert colour_error(flat, flat + 10) == pytest.approx(10.0)
    assert colour_error(flat, flat) == 0.0


@pytest.fixture(scope="module")
def result():
    return run_vae_bench(
        VAEBenchSettings(checkpoints=("shipped", "random"), samples=3, seconds=2, progress=False)
    )


@needs_shipped
def test_the_trained_vae_passes_far_more_of_the_footage_than_a_random_one(result):
    shipped, rand = result["vaes"]["shipped"], result["vaes"]["random"]
    assert shipped["psnr"] > rand["psnr"] + 5
    assert shipped["psnr_head"] > rand["psnr_head"] + 5
    assert shipped["colour_error"] < rand["colour_error"]
    assert shipped["identity"] > rand["identity"]
    assert len(shipped["psnr_by_second"]) == 2
    assert shipped["mouth_samples"] >= 1
    assert shipped["mouth_r"] > (rand["mouth_r"] or 0.0)
    gt = result["ground_truth"]
    assert gt["lip_sync"] is not None and gt["identity"] > shipped["identity"] - 0.2
    assert shipped["identity_of_ground_truth"] == pytest.approx(
        shipped["identity"] / gt["identity"]
    )
    assert shipped["seconds_per_video_second"] > 0
    assert [m["sample"] for m in result["per_sample"]["shipped"]] == [0, 1, 2]


@needs_shipped
def test_table_and_figure(result, tmp_path):
    text = markdown_table(result)
    assert "| shipped |" in text and "| random |" in text
    plot_vae(result, tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 5000
    assert {"ground_truth", "shipped", "random"} <= set(result["_examples"])


def _parser():
    p = OneLineArgumentParser(prog="lpm")
    sub = p.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_command", required=True)
    for register in REGISTRARS:
        register(bench)
    return p


@needs_shipped
def test_cli_writes_json_markdown_and_figure(tmp_path, capsys):
    out = tmp_path / "v"
    argv = ["bench", "vae", "--samples", "1", "--seconds", "1", "--threads", "1"]
    for kind in ("json", "md", "png"):
        argv += [f"--{kind}", str(out / f"v.{kind}")]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    data = json.loads((out / "v.json").read_text())
    assert list(data["vaes"]) == ["shipped"] and "_examples" not in data
    assert data["vaes"]["shipped"]["psnr"] > 15
    assert "| shipped |" in (out / "v.md").read_text()
    assert (out / "v.png").stat().st_size > 1000
    assert "| shipped |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--samples", "0"], "--samples"),
        (["--chunk", "6"], "--chunk"),
        (["--checkpoint", "/nonexistent/ckpt"], "no such folder"),
        (["--checkpoint", "random", "--checkpoint", "random"], "twice"),
        (["--json", "x.txt"], ".json"),
        (["--judges", "/nonexistent/judges"], "not a folder"),
    ],
)
def test_cli_rejects_bad_input(argv, message):
    args = _parser().parse_args(["bench", "vae", *argv])
    with pytest.raises(UsageError, match=message):
        args.func(args)


@needs_shipped
def test_a_decoder_that_hears_is_also_run_on_silence(tmp_path):
    """The gap between a hearing decoder's two rows is what the voice adds."""
    import dataclasses

    import torch

    from model_core.checkpoint import save_checkpoint
    from model_core.config import LPMConfig
    from model_core.model import build_model

    base = LPMConfig.preset("tiny")
    cfg = dataclasses.replace(base, vae=dataclasses.replace(base.vae, decoder_audio=8))
    model = build_model(cfg, seed=0, with_base=False)
    torch.manual_seed(0)
    for p in model.vae.decoder.audio_inject.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ckpt = save_checkpoint(model, cfg, tmp_path / "hears", version="test")
    res = run_vae_bench(
        VAEBenchSettings(checkpoints=(str(ckpt),), samples=2, seconds=2, progress=False)
    )
    heard, silent = res["vaes"][str(ckpt)], res["vaes"][f"{ckpt} (silent)"]
    assert heard["psnr"] != silent["psnr"]
    assert f"| {ckpt} (silent) |" in markdown_table(res)
