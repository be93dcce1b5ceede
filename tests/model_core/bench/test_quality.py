"""`lpm bench quality` end to end on the smallest possible bench (1 sample of 1 s, a 2-"minute"
stream of 1 s minutes, random-init model): every key for every system, and determinism."""

import argparse
import json

import numpy as np
import pytest

from model_core.bench.judges import JUDGES_DIR, PROBE_FILE
from model_core.bench.metrics.listening import listening_score
from model_core.bench.quality import METRICS, quick_settings, run_quality_bench
from model_core.bench.systems import SYSTEMS
from model_core.cli import OneLineArgumentParser
from model_core.cli.bench_quality import REGISTRARS
from model_core.cli.errors import UsageError

WIN_RATES = (
    "online_vs_untrained",
    "online_vs_no_sink",
    "online_vs_single_ref",
    "online_vs_merged_audio",
    "online_vs_base",
)
TINY = dict(
    samples=1,
    seconds=1,
    stream_seconds=0,
    minute_seconds=1,
    base_steps=1,
    validation_samples=1,
    listening_loops=1,
    listening_seconds=4,
    listening_pass_seconds=4,
    checkpoint=None,
    allow_untrained_judges=True,
    progress=False,
)


@pytest.fixture(scope="module")
def result():
    return run_quality_bench(quick_settings(**TINY))


def test_json_has_every_metric_for_every_system_and_every_win_rate(result):
    assert set(result["systems"]) == set(SYSTEMS)
    for name, m in result["systems"].items():
        for metric in METRICS:
            assert metric in m, (name, metric)
    assert set(result["win_rates"]) == set(WIN_RATES)
    assert all(result["win_rates"][k] is not None for k in WIN_RATES)
    assert result["model"]["source"] == "random init"
    assert result["validation"]["table"]["ground_truth"]["flicker"] is not None
    json.dumps(result)  # serialisable as is


def test_listening_is_read_from_long_dialogue_for_every_system_but_base(result):
    sy = result["systems"]
    assert sy["base"]["listening"] is None and sy["base"]["listening_pass"] is None
    for name, m in sy.items():
        if name == "base":
            continue
        p = m["listening_pass"]
        assert (p["loops"], p["seconds"]) == (1, 4), name
        rl, nl, rs, ns = p["counts"]
        assert 0 <= rl <= nl and 0 <= rs <= ns and 0 < nl + ns <= 4 * 24, (name, p["counts"])
        assert m["listening"] == listening_score(np.array(p["counts"])), name
    # The same loop the listening validation reads: ground truth's counts are the validation's.
    want = result["validation"]["listening"]["counts"]["ground_truth"]
    assert sy["ground_truth"]["listening_pass"]["counts"] == want
    # Random init: `untrained` is the same weights as `online`, and streams the same frames.
    assert sy["untrained"]["listening_pass"] == sy["online"]["listening_pass"]


def test_cli_listening_pass_options_reach_the_settings():
    from model_core.cli.bench_quality import quality_settings

    args = ["bench", "quality", "--quick", "--listening-pass", "0"]
    s = quality_settings(_parser().parse_args(args))
    assert (s.listening_pass, s.listening_pass_seconds) == (0, 12)
    args = ["bench", "quality", "--listening-pass", "2", "--listening-pass-seconds", "30"]
    s = quality_settings(_parser().parse_args(args))
    assert (s.listening_pass, s.listening_pass_seconds, s.quick) == (2, 30, False)


def test_same_seed_same_figures_and_a_long_stream_gives_drift(result):
    again = run_quality_bench(
        quick_settings(**TINY | dict(stream_seconds=2), systems=("ground_truth", "online"))
    )
    for name in ("ground_truth", "online"):
        for metric in ("lip_sync", "identity", "listening", "flicker"):
            assert again["systems"][name][metric] == result["systems"][name][metric], (name, metric)
        assert again["systems"][name]["drift"] is not None
        assert len(again["systems"][name]["stability"]["per_minute"]) == 2
    assert again["systems"]["ground_truth"]["drift"] == 0.0  # the same footage every minute


def _parser():
    p = OneLineArgumentParser(prog="lpm")
    sub = p.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_command", required=True)
    for register in REGISTRARS:
        register(bench)
    return p


@pytest.mark.skipif(not (JUDGES_DIR / PROBE_FILE).exists(), reason="no trained judges")
def test_cli_writes_json_markdown_and_figure(tmp_path):
    # Ground truth only: no model is built, so this checks the command's plumbing.
    out = tmp_path / "q"
    args = _parser().parse_args(
        [
            "bench",
            "quality",
            "--quick",
            "--samples",
            "2",
            "--seconds",
            "1",
            "--systems",
            "ground_truth",
            "--stream-seconds",
            "0",
            "--validation-samples",
            "1",
            "--json",
            str(out / "q.json"),
            "--md",
            str(out / "q.md"),
            "--png",
            str(out / "q.png"),
        ]
    )
    assert args.func(args) == 0
    data = json.loads((out / "q.json").read_text())
    assert data["quick"] and set(data["systems"]) == {"ground_truth"}
    assert "| ground_truth |" in (out / "q.md").read_text()
    assert (out / "q.png").stat().st_size > 1000


def test_cli_with_no_validation_samples_skips_the_metric_validation(tmp_path):
    out = tmp_path / "q"
    argv = ["bench", "quality", "--quick", "--samples", "1", "--seconds", "1"]
    argv += ["--systems", "ground_truth", "--stream-seconds", "0", "--validation-samples", "0"]
    args = _parser().parse_args([*argv, "--json", str(out / "q.json"), "--md", str(out / "q.md")])
    assert args.func(args) == 0
    data = json.loads((out / "q.json").read_text())
    assert data["validation"] is None
    assert data["systems"]["ground_truth"]["samples"] == 1
    assert "Metric validation: skipped" in (out / "q.md").read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["--systems", "online,bogus"],
        ["--samples", "0"],
        ["--json", "x.txt"],
        ["--stream-seconds", "-1"],
        ["--listening-pass", "-1"],
        ["--listening-pass-seconds", "0"],
    ],
)
def test_cli_rejects_bad_input(argv, tmp_path):
    args = _parser().parse_args(["bench", "quality", *argv])
    with pytest.raises(UsageError):
        args.func(args)


def test_registrars_add_both_commands():
    p = _parser()
    assert isinstance(p, argparse.ArgumentParser)
    assert p.parse_args(["bench", "train-judges", "--probe-epochs", "1"]).probe_epochs == 1


def test_stream_systems_limits_the_long_stream_to_the_chosen_systems():
    r = run_quality_bench(
        quick_settings(
            **TINY | dict(stream_seconds=2),
            systems=("ground_truth", "online", "no_sink"),
            stream_systems=("online",),
        )
    )
    assert r["systems"]["online"]["drift"] is not None
    assert r["systems"]["no_sink"]["drift"] is None and r["systems"]["no_sink"]["stability"] is None
    assert r["systems"]["no_sink"]["samples"] == 1  # its samples were still rendered


def test_vae_roundtrip_streams_the_footage_through_the_models_own_vae():
    """The ceiling system: chunk-by-chunk encode + decode equals the whole-clip round trip,
    keeps the clip's length, and is not the footage itself (the VAE loses detail)."""
    import numpy as np
    import torch

    from model_core.bench.systems import vae_roundtrip
    from model_core.pipeline import LPMPipeline

    vae = LPMPipeline.build(preset="tiny", seed=0, with_base=False).model.vae
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 128, 128, 3), dtype=np.uint8)  # 30 = 1 + 4k + 1: padded
    out = vae_roundtrip(vae, frames, chunk=8)
    assert out.shape == frames.shape and out.dtype == np.uint8
    x = np.concatenate([frames, np.repeat(frames[-1:], 3, axis=0)])
    video = torch.as_tensor(x).permute(3, 0, 1, 2).float()[None] / 127.5 - 1
    with torch.no_grad():
        whole = vae.decode(vae.encode(video))[0].permute(1, 2, 3, 0)
    whole = ((whole + 1) * 127.5).round().to(torch.uint8).numpy()[:30]
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1
    assert not np.array_equal(out, frames)
