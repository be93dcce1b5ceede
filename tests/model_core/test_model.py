import torch

from model_core.config import LPMConfig
from model_core.model import build_model


def test_lpm_17b_counts_16_to_18_billion_on_the_meta_device():
    model = build_model(LPMConfig.preset("lpm-17b"), device="meta")
    counts = model.param_counts()
    assert 16e9 <= counts["total"] <= 18e9, counts
    assert 13.5e9 < counts["trunk"] < 14.5e9  # the Wan2.1-14B trunk without CLIP context
    assert counts["references"] == 0
    assert all(p.device.type == "meta" for p in model.parameters())


def test_presets_round_trip_through_json_dicts():
    for name in ("tiny", "small", "lpm-17b"):
        cfg = LPMConfig.preset(name)
        assert LPMConfig.from_dict(cfg.to_dict()) == cfg


def test_backbone_starts_from_base_weights():
    model = build_model(LPMConfig.preset("tiny"))
    for (n, a), (_, b) in zip(
        model.base.named_parameters(), model.backbone.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), n


def test_random_weights_do_not_depend_on_building_the_base_teacher():
    cfg = LPMConfig.preset("tiny")
    a, b = build_model(cfg, seed=5), build_model(cfg, seed=5, with_base=False)
    assert b.base is None
    for (n, p), (_, q) in zip(
        a.backbone.named_parameters(), b.backbone.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), n
