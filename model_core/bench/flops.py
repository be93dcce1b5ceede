"""FLOPs of one 1-second Online chunk, per stage, counted rather than estimated.

Each stage of a steady-state chunk (KV window already full) runs once under
`torch.utils.flop_counter.FlopCounterMode` on the meta device: shapes propagate, nothing is
computed or allocated, so the 17B preset counts in seconds on a laptop. The counter covers
matmuls, convolutions and attention (SDPA); elementwise work (norms, activations, softmax
outside SDPA) is not counted, which for these transformers is a few percent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from model_core.config import LPMConfig

STAGES = ("audio", "backbone", "refiner", "vae")


@dataclass
class ChunkWorkload:
    """What a chunk's cost depends on besides the config."""

    n_body: int | None = None  # None: the most the config allows (a worst case for sizing)
    n_face: int | None = None
    text_tokens: int | None = None  # None: the text encoder's max tokens
    history_chunks: int | None = None  # None: enough to fill the window (steady state)
    window_chunks: int | None | str = "config"  # "config", or None for the naive full history


def _meta_references(cfg: LPMConfig, n_body: int, n_face: int):
    from model_core.references import EncodedReferences

    z, (h, w) = cfg.vae.z_dim, cfg.latent_hw
    f = cfg.refs.face_size // cfg.vae.spatial_factor
    return EncodedReferences(
        global_latent=torch.zeros(1, z, 1, h, w),
        body={v: torch.zeros(1, z, 1, h, w) for v in cfg.refs.body_views[:n_body]},
        face={e: torch.zeros(1, z, 1, f, f) for e in cfg.refs.face_labels[:n_face]},
        model_version="meta",
    )


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return int(counter.get_total_flops()), out


def online_chunk_flops(
    cfg: LPMConfig, workload: ChunkWorkload | None = None, model=None
) -> dict[str, int]:
    """FLOPs per stage of one 1-second chunk: {"audio", "backbone", "refiner", "vae"}.

    `model` may be a real (CPU) model to cross-check the meta count; by default one is built
    on the meta device.
    """
    from model_core.model import build_model
    from model_core.online import OnlineStream

    wl = workload or ChunkWorkload()
    device = torch.device("meta")
    if model is None:
        model = build_model(cfg, device="meta", with_base=False)
    else:
        device = next(model.parameters()).device
    n_body = cfg.refs.max_body if wl.n_body is None else wl.n_body
    n_face = cfg.refs.max_face if wl.n_face is None else wl.n_face
    tokens = cfg.text.max_tokens if wl.text_tokens is None else wl.text_tokens
    window = cfg.online.window_chunks if wl.window_chunks == "config" else wl.window_chunks
    history = wl.history_chunks if wl.history_chunks is not None else (window or 0)
    sr = cfg.audio.sample_rate
    with torch.device(device), torch.no_grad():
        refs = _meta_references(cfg, n_body, n_face)
        context = torch.zeros(1, max(1, tokens), cfg.text.dim)
        stream = OnlineStream(model, refs, context, None, window_chunks=window)
        silence = torch.zeros(sr)
        for _ in range(history):  # fill the KV window and the audio history first
            stream.backbone(stream.encode_audio(silence, silence))
            stream.index += 1
        flops: dict[str, int] = {}
        flops["audio"], audio = count_flops(stream.encode_audio, silence, silence)
        flops["backbone"], x0 = count_flops(stream.backbone, audio)
        flops["refiner"], latents = count_flops(stream.refine, x0, audio)
        flops["vae"], _ = count_flops(stream.decoder.push, latents)
    return flops
