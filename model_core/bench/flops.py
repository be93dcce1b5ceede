"""FLOPs of one 1-second Online chunk, per stage, counted rather than estimated.

Each stage of a steady-state chunk (KV window already full) runs once under
`torch.utils.flop_counter.FlopCounterMode` on the meta device: shapes propagate, nothing is
computed or allocated, so the 17B preset counts in seconds on a laptop. The counter covers
matmuls, convolutions and attention (SDPA); elementwise work (norms, activations, softmax
outside SDPA) is not counted, which for these transformers is a few percent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

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


class _UniformMetaScalars(TorchDispatchMode):
    """Answers a boolean asked of a meta tensor with True.

    The only data-dependent branch on the Online path is the DiT's "are all frames at one
    timestep?" test, which is true for every Online step. Any other scalar read fails loudly,
    and a test checks that the meta count equals a real CPU run's on `tiny`.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].is_meta:
            if args[0].dtype == torch.bool:
                return True
            raise RuntimeError(f"data-dependent {args[0].dtype} scalar on the meta device")
        return func(*args, **(kwargs or {}))


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


def _fused_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kw) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# The CPU's fused attention kernel has no formula in torch's counter (the meta device
# decomposes attention into counted matmuls); without this a CPU count misses attention.
_EXTRA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _fused_attention_flops
}


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        out = fn(*args, **kwargs)
    return int(counter.get_total_flops()), out


def online_chunk_flops(
    cfg: LPMConfig,
    workload: ChunkWorkload | None = None,
    model=None,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, int]:
    """FLOPs per stage of one 1-second chunk: {"audio", "backbone", "refiner", "vae"}, or
    the `stages` asked for (the Backbone is always run: the later stages need its output).

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
    scalars = _UniformMetaScalars() if device.type == "meta" else contextlib.nullcontext()
    with torch.device(device), torch.no_grad(), scalars:
        refs = _meta_references(cfg, n_body, n_face)
        context = torch.zeros(1, max(1, tokens), cfg.text.dim)
        stream = OnlineStream(model, refs, context, None, window_chunks=window)
        silence = torch.zeros(sr)
        if history:  # fill the KV window first; its cost depends on shapes only, so one
            stream.backbone(stream.encode_audio(silence, silence))  # chunk's K/V is reused
            for _ in range(history - 1):
                stream.cache.append(stream.cache.chunks[-1])
            stream.index += history
        flops: dict[str, int] = {}
        flops["audio"], audio = count_flops(stream.encode_audio, silence, silence)
        flops["backbone"], x0 = count_flops(stream.backbone, audio)
        if "refiner" in stages or "vae" in stages:
            flops["refiner"], latents = count_flops(stream.refine, x0, audio)
        if "vae" in stages:
            flops["vae"], _ = count_flops(stream.decoder.push, latents)
    return {k: v for k, v in flops.items() if k in stages}
