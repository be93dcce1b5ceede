"""`lpm bench realtime` on a few seconds: the JSON has every figure and the plot is a PNG.

The figures themselves are measurements of this machine, not asserted here.
"""

from __future__ import annotations

import json
import math

from PIL import Image

from model_core.cli import main

KEYS = {
    "rtf",
    "rtf_per_stage",
    "first_frame_s",
    "first_frame_cold_s",
    "chunk_ms_p50",
    "chunk_ms_p99",
    "flatness",
    "rss_start_mb",
    "rss_end_mb",
    "rss_growth_mb",
    "naive_rtf",
    "naive_per_chunk_ms",
    "naive_projected_rtf_at_full_length",
    "mfu",
    "matmul_peak_gflops",
    "flops_per_chunk",
    "per_chunk_ms",
    "threads",
    "machine",
    "definitions",
}


def test_short_bench_writes_json_and_png(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "plots" / "bench.png"
    status = main(
        [
            "bench",
            "realtime",
            "--preset",
            "tiny",
            "--seconds",
            "2",
            "--naive-seconds",
            "2",
            "--warmup-chunks",
            "1",
            "--peak-matmul-n",
            "256",
            "--threads",
            "1",
            "--json",
            str(out),
            "--png",
            str(png),
        ]
    )
    assert status == 0
    r = json.loads(out.read_text())
    assert KEYS <= set(r)
    assert set(r["rtf_per_stage"]) == {"audio", "backbone", "refiner", "vae"}
    assert len(r["per_chunk_ms"]) == 2 and len(r["naive_per_chunk_ms"]) == 2
    for k in (
        "rtf",
        "first_frame_s",
        "chunk_ms_p50",
        "chunk_ms_p99",
        "flatness",
        "naive_rtf",
        "mfu",
    ):
        assert isinstance(r[k], float) and math.isfinite(r[k]) and r[k] > 0, k
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert "RTF" in capsys.readouterr().out


def test_bad_arguments_are_usage_errors(tmp_path, capsys):
    assert main(["bench", "realtime", "--seconds", "0"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "lpm bench realtime: error: --seconds must be >= 1, got 0"
    )
    assert main(["bench", "realtime", "--json", str(tmp_path / "x.txt")]) == 2
    assert "must end in .json" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
