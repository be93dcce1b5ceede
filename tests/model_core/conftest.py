import dataclasses

import pytest
import torch

from model_core.config import DiTConfig, LPMConfig


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def small_dit_config(**kw) -> DiTConfig:
    """A DiT small enough that property tests run in milliseconds."""
    base = dict(dim=64, ffn_dim=128, num_heads=2, num_layers=4, freq_dim=32)
    return DiTConfig(**(base | kw))


@pytest.fixture
def tiny_config() -> LPMConfig:
    return LPMConfig.preset("tiny")


def with_dit(cfg: LPMConfig, **kw) -> LPMConfig:
    return dataclasses.replace(cfg, dit=dataclasses.replace(cfg.dit, **kw))
