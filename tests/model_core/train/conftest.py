"""A whole LPM model small enough that every training stage steps in a fraction of a second."""

import dataclasses

import pytest
import torch

from model_core.config import (
    AudioConfig,
    DiTConfig,
    LPMConfig,
    OnlineConfig,
    ReferenceConfig,
    TextConfig,
    VAEConfig,
    VideoConfig,
)
from model_core.model import build_model
from model_core.train.config import TrainConfig
from model_core.train.data import LatentCache, SyntheticClipSource


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # Micro-sized ops only lose to thread synchronisation on a shared 2-core box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def micro_config() -> LPMConfig:
    return LPMConfig(
        name="micro",
        video=VideoConfig(height=32, width=32),
        vae=VAEConfig(base_channels=4, channel_mults=(1, 2, 2), mid_attention=False),
        audio=AudioConfig(feature_dim=16, hidden=16),
        text=TextConfig(vocab_size=256, dim=16, max_tokens=8),
        dit=DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, freq_dim=32),
        refs=ReferenceConfig(face_size=16),
        online=OnlineConfig(refiner_layers=1),
    )


@pytest.fixture(scope="session")
def micro_cfg() -> LPMConfig:
    return micro_config()


@pytest.fixture(scope="session")
def micro_source(micro_cfg) -> SyntheticClipSource:
    return SyntheticClipSource(micro_cfg, identities=2, seconds_each=3)


@pytest.fixture(scope="session")
def micro_cache(micro_cfg, micro_source) -> LatentCache:
    """Two 2-second windows (one per identity), encoded by a random micro VAE."""
    model = build_model(micro_cfg, seed=0)
    return LatentCache.build(model, micro_source, seconds=2, max_windows=2, vae_version="micro")


@pytest.fixture(scope="session")
def fixed_cache(micro_cache) -> LatentCache:
    """A single window: every batch drawn from it is the same batch."""
    c = micro_cache
    return LatentCache(
        c.latents[:1],
        c.speak[:1],
        c.listen[:1],
        c.captions[:1],
        c.identities[:1],
        c.refs,
        c.ref_images,
        c.seconds,
        c.vae_version,
        c.mouth[:1],
        c.pictures[:1],
        c.mouth_open[:1],
    )


def base_trainer_on(tmp_path, cfg, source, cache: LatentCache, options: dict):
    """A one-step `base` Trainer started on `cache`, saved as its latent cache with the micro
    VAE's version (so it is kept unless the stage's options need what it lacks)."""
    from model_core.train.loop import Trainer, module_digest

    path = tmp_path / "latents.pt"
    version = module_digest(build_model(cfg, seed=0).vae)
    dataclasses.replace(cache, vae_version=version).save(path)
    tc = TrainConfig(
        stage="base",
        out=str(tmp_path / "run"),
        steps=1,
        batch=1,
        progress=False,
        latent_cache=str(path),
        max_windows=2,
        options=options,
    )
    return Trainer(tc, cfg, source=source)


@pytest.fixture(scope="session")
def reader_path(tmp_path_factory, micro_source) -> str:
    """A pixel mouth reader fitted on the micro clips' frames (a random one reads every mouth
    alike), saved for the stages' `mouth_reader` option."""
    from model_core.train.mouth_reader import train_mouth_reader

    reader, _ = train_mouth_reader(micro_source, steps=150, batch=32, progress=False)
    path = tmp_path_factory.mktemp("reader") / "reader.safetensors"
    reader.save(path)
    return str(path)


def first_chunk(pipe, seed: int = 3, **stream_options):
    """One second of a stream of `pipe` on a random picture, a voice of noise and a silent
    partner, the latents kept (`ChunkResult`)."""
    import numpy as np

    from model_core.pipeline import ReferenceImages

    rng = np.random.default_rng(1)
    side = pipe.config.video.height
    refs = ReferenceImages(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
    speak = (0.2 * rng.standard_normal(16000)).astype(np.float32)
    listen = np.zeros(16000, np.float32)
    stream = pipe.start_stream(refs, seed=seed, **stream_options)
    return stream.push(speak, listen, keep_latents=True)
