"""`lpm model info`: parameter counts by part and per-stage FLOPs, counted on the meta device."""

from __future__ import annotations

import dataclasses
import json

import pytest

from model_core.bench.flops import ChunkWorkload, online_chunk_flops
from model_core.cli.model_info import format_info
from model_core.config import LPMConfig
from model_core.model import build_model

from .runner import run_lpm


def small_config() -> LPMConfig:
    """Tiny's layout at a fraction of its size: counting properties hold at any size."""
    cfg = LPMConfig.preset("tiny")
    return dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, height=64, width=64),
        vae=dataclasses.replace(cfg.vae, base_channels=8),
        dit=dataclasses.replace(cfg.dit, dim=64, ffn_dim=128, num_heads=2, num_layers=2),
        online=dataclasses.replace(cfg.online, refiner_layers=1),
    )


@pytest.fixture(scope="module")
def tiny_info() -> dict:
    res = run_lpm("model", "info", "--preset", "tiny", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_json_has_params_by_part_and_flops_by_stage(tiny_info):
    info = tiny_info
    parts = info["params"]
    assert set(parts) >= {"vae", "trunk", "audio", "text", "references", "refiner"}
    assert parts["references"] == 0  # references are tokens: no parameters by design
    assert info["params_total"] == sum(parts.values())
    assert info["params_total"] == build_model(LPMConfig.preset("tiny")).param_counts()["total"]
    flops = info["flops_per_chunk"]
    assert set(flops) == {"audio", "backbone", "refiner", "vae"}
    assert all(v > 0 for v in flops.values())
    assert flops["backbone"] > flops["refiner"]  # 2 steps + refill of a deeper net vs 1 step


def test_table_names_every_part_and_stage(tiny_info):
    text = format_info(tiny_info)
    for word in ("vae", "trunk", "audio", "references", "refiner", "total", "backbone", "FLOP"):
        assert word in text


def test_unknown_preset_is_a_usage_error():
    res = run_lpm("model", "info", "--preset", "huge")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "lpm model info: error: unknown preset 'huge'; choose from tiny, small, lpm-17b"
    )


def test_meta_count_equals_a_real_cpu_run():
    """The meta-device count (what 17B relies on) matches counting a real forward pass,
    fused CPU attention included."""
    cfg = small_config()
    wl = ChunkWorkload(n_body=2, n_face=1, text_tokens=8)
    cpu = online_chunk_flops(cfg, wl, model=build_model(cfg, with_base=False))
    assert online_chunk_flops(cfg, wl) == cpu


def test_naive_history_costs_grow_and_window_costs_do_not():
    cfg = small_config()

    def backbone(**kw) -> int:
        return online_chunk_flops(cfg, ChunkWorkload(**kw), stages=("backbone",))["backbone"]

    window = [backbone(history_chunks=h) for h in (2, 6)]
    naive = [backbone(history_chunks=h, window_chunks=None) for h in (2, 6)]
    assert window[0] == window[1]
    assert naive[0] == window[0] and naive[1] > 1.2 * naive[0]


@pytest.mark.slow
def test_17b_counts_on_meta():
    res = run_lpm("model", "info", "--preset", "lpm-17b", "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert 16e9 <= info["params_total"] <= 18e9
    assert info["flops_per_chunk"]["backbone"] > 1e15
