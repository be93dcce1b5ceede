"""The trunk loads Wan2.1 weights. The Wan-format state dict is written out here from Wan's
published architecture (names and shapes), independently of the LPM module."""

import pytest
import torch

from model_core.dit import LPMTransformer
from model_core.wan_mapping import load_wan_into
from tests.model_core.conftest import small_dit_config

DIM, FFN, LAYERS, TEXT, FREQ, CLIP, IN = 64, 128, 2, 48, 32, 40, 36


def wan_i2v_state_dict(
    dim=DIM, ffn=FFN, layers=LAYERS, text=TEXT, freq=FREQ, clip=CLIP, in_dim=IN, out_dim=16
):
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = {
        "patch_embedding.weight": r(dim, in_dim, 1, 2, 2),
        "patch_embedding.bias": r(dim),
        "text_embedding.0.weight": r(dim, text),
        "text_embedding.0.bias": r(dim),
        "text_embedding.2.weight": r(dim, dim),
        "text_embedding.2.bias": r(dim),
        "time_embedding.0.weight": r(dim, freq),
        "time_embedding.0.bias": r(dim),
        "time_embedding.2.weight": r(dim, dim),
        "time_embedding.2.bias": r(dim),
        "time_projection.1.weight": r(6 * dim, dim),
        "time_projection.1.bias": r(6 * dim),
        "head.head.weight": r(out_dim * 4, dim),
        "head.head.bias": r(out_dim * 4),
        "head.modulation": r(1, 2, dim),
        "img_emb.proj.0.weight": r(clip),
        "img_emb.proj.0.bias": r(clip),
        "img_emb.proj.1.weight": r(clip, clip),
        "img_emb.proj.1.bias": r(clip),
        "img_emb.proj.3.weight": r(dim, clip),
        "img_emb.proj.3.bias": r(dim),
        "img_emb.proj.4.weight": r(dim),
        "img_emb.proj.4.bias": r(dim),
    }
    for i in range(layers):
        p = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            for n in "qkvo":
                sd[f"{p}{attn}.{n}.weight"], sd[f"{p}{attn}.{n}.bias"] = r(dim, dim), r(dim)
            sd[f"{p}{attn}.norm_q.weight"], sd[f"{p}{attn}.norm_k.weight"] = r(dim), r(dim)
        for n in ("k_img", "v_img"):
            sd[f"{p}cross_attn.{n}.weight"], sd[f"{p}cross_attn.{n}.bias"] = r(dim, dim), r(dim)
        sd[f"{p}cross_attn.norm_k_img.weight"] = r(dim)
        sd[f"{p}norm3.weight"], sd[f"{p}norm3.bias"] = r(dim), r(dim)
        sd[f"{p}ffn.0.weight"], sd[f"{p}ffn.0.bias"] = r(ffn, dim), r(ffn)
        sd[f"{p}ffn.2.weight"], sd[f"{p}ffn.2.bias"] = r(dim, ffn), r(dim)
        sd[f"{p}modulation"] = r(1, 6, dim)
    return sd


def lpm_trunk(image_context_dim: int) -> LPMTransformer:
    cfg = small_dit_config(
        dim=DIM,
        ffn_dim=FFN,
        num_layers=LAYERS,
        freq_dim=FREQ,
        cond_dim=20,
        image_context_dim=image_context_dim,
    )
    return LPMTransformer(cfg, z_dim=16, text_dim=TEXT, audio_dim=8)


def test_wan_i2v_weights_load_into_the_trunk_dropping_clip_image_context():
    wan = wan_i2v_state_dict()
    net = lpm_trunk(image_context_dim=0)
    report = load_wan_into(net, wan)
    own = net.state_dict()
    for k in report.loaded:
        assert torch.equal(own[k], wan[k]), k
    assert sorted(report.dropped) == sorted(k for k in wan if "img" in k)
    assert len(report.loaded) + len(report.dropped) == len(wan)
    assert all("audio" in k for k in report.initialised) and len(report.initialised) > 0
    # Audio starts silent, so the loaded trunk computes what Wan computes.
    assert all(torch.count_nonzero(b.audio_attn.o.weight) == 0 for b in net.blocks)


def test_wan_i2v_weights_load_with_image_context_kept():
    wan = wan_i2v_state_dict()
    net = lpm_trunk(image_context_dim=CLIP)
    report = load_wan_into(net, wan)
    assert report.dropped == []
    assert torch.equal(
        net.state_dict()["blocks.1.cross_attn.k_img.weight"],
        wan["blocks.1.cross_attn.k_img.weight"],
    )


def test_mismatched_shapes_are_rejected_by_name():
    wan = wan_i2v_state_dict(ffn=FFN * 2)
    with pytest.raises(ValueError, match="ffn"):
        load_wan_into(lpm_trunk(0), wan)


def test_missing_trunk_keys_are_rejected():
    wan = wan_i2v_state_dict()
    del wan["blocks.0.self_attn.q.weight"]
    with pytest.raises(KeyError, match="self_attn.q"):
        load_wan_into(lpm_trunk(0), wan)


def test_loaded_trunk_runs_and_prefixed_checkpoints_map():
    wan = {f"model.diffusion_model.{k}": v for k, v in wan_i2v_state_dict().items()}
    net = lpm_trunk(0)
    load_wan_into(net, wan)
    sink = net.encode_sink([(torch.randn(1, 16, 1, 4, 4), 0, 0)])
    out = net(
        torch.randn(1, 16, 2, 4, 4),
        torch.full((1, 2), 0.5),
        sink=sink,
        frame_pos=torch.arange(2) + 4,
        context=torch.randn(1, 3, TEXT),
    )
    assert out.shape == (1, 16, 2, 4, 4) and torch.isfinite(out).all()
