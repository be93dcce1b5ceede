"""Loading published Wan2.1 DiT weights into the LPM trunk.

The trunk uses Wan2.1's `WanModel` parameter names and shapes, so the mapping is mostly the
identity with a prefix (`backbone.` / `base.`). What differs:
- LPM adds per-layer audio cross-attention (`blocks.N.audio_attn.*`, `blocks.N.norm_audio.*`):
  not in Wan; they keep their initialisation, with the audio output projection zeroed so the
  loaded trunk computes exactly what Wan computes until the audio layers are trained.
- LPM's in-sequence reference tokens replace Wan-I2V's CLIP image cross-attention
  (`blocks.N.cross_attn.k_img/v_img/norm_k_img`, `img_emb.*`). When the target config has
  `image_context_dim == 0` those keys are dropped and listed in the report.
- Wan-I2V's 36 input channels (16 noise + 16 image latent + 4 mask) load into the patch
  embedding when the config has `cond_dim == 20`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from model_core.dit import LPMTransformer

WAN_IMAGE_KEYS = ("cross_attn.k_img.", "cross_attn.v_img.", "cross_attn.norm_k_img.", "img_emb.")
LPM_ONLY_KEYS = (".audio_attn.", ".norm_audio.")


@dataclass
class WanLoadReport:
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # Wan keys LPM does not use
    initialised: list[str] = field(default_factory=list)  # LPM keys Wan does not have


def map_wan_state_dict(
    wan: dict[str, torch.Tensor], keep_image_context: bool
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Wan2.1 WanModel names -> LPMTransformer names. Returns (mapped, dropped keys)."""
    out, dropped = {}, []
    for name, tensor in wan.items():
        key = name.removeprefix("model.").removeprefix("diffusion_model.")
        if not keep_image_context and any(m in key for m in WAN_IMAGE_KEYS):
            dropped.append(name)
            continue
        out[key] = tensor
    return out, dropped


@torch.no_grad()
def load_wan_into(net: LPMTransformer, wan: dict[str, torch.Tensor]) -> WanLoadReport:
    """Load a Wan2.1 state dict into one LPM transformer; every trunk key must match."""
    mapped, dropped = map_wan_state_dict(wan, keep_image_context=net.cfg.image_context_dim > 0)
    own = net.state_dict()
    lpm_only = [k for k in own if any(m in f".{k}" for m in LPM_ONLY_KEYS)]
    expected = set(own) - set(lpm_only)
    missing = sorted(expected - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"Wan weights do not fit this trunk: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in mapped.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{k}: Wan shape {tuple(v.shape)} != LPM shape {tuple(own[k].shape)}")
    net.load_state_dict(mapped, strict=False)
    for block in net.blocks:  # audio starts silent: the loaded trunk behaves as Wan's
        block.audio_attn.o.weight.zero_()
        block.audio_attn.o.bias.zero_()
    return WanLoadReport(sorted(mapped), dropped, lpm_only)
