"""`lpm train all`: the stage order, the checkpoint each stage starts from, and recipe
overrides (continuing a shipped model with `--init` and `--set`). The loop itself is tested in
test_loop; here it is replaced by a recorder so the orchestration runs in milliseconds."""

import json

import pytest

from model_core.cli import main
from model_core.train import loop
from model_core.train.config import TINY_CURRICULUM
from model_core.train.curriculum import TINY_MINUTES, run_curriculum


@pytest.fixture
def recorded(monkeypatch):
    seen = []

    def fake_train(tc, model_config=None):
        tc.model_config = model_config  # recorded beside the stage's settings
        seen.append(tc)
        return {"stage": tc.stage, "steps": 1, "lr": tc.lr}

    monkeypatch.setattr(loop, "train", fake_train)
    return seen


def test_continuing_a_model_starts_from_init_and_applies_overrides(tmp_path, recorded):
    report = run_curriculum(
        tmp_path,
        data="synthetic",
        stages=["base", "ode"],
        init="ckpt/shipped",
        overrides={"base": {"lr": 2e-4, "minutes": 40, "motion_weight": 2.0}},
        progress=False,
        log=lambda s: None,
    )
    base, ode = recorded
    assert base.init == "ckpt/shipped" and ode.init == str(tmp_path / "ckpt" / "base" / "final")
    assert base.lr == 2e-4 and base.max_minutes == 40.0
    assert base.options == {**TINY_CURRICULUM["base"]["options"], "motion_weight": 2.0}
    # what was not overridden is the recipe's
    assert (
        base.ema == TINY_CURRICULUM["base"]["ema"]
        and base.steps == TINY_CURRICULUM["base"]["steps"]
    )
    assert ode.lr == TINY_CURRICULUM["ode"]["lr"] and ode.max_minutes == TINY_MINUTES["ode"]
    saved = json.loads((tmp_path / "curriculum.json").read_text())
    assert saved["init"] == "ckpt/shipped" and saved["overrides"]["base"]["lr"] == 2e-4
    assert report["stages"]["ode"]["stage"] == "ode"


def test_overrides_do_not_leak_into_the_recipe(tmp_path, recorded):
    before = json.dumps(TINY_CURRICULUM, sort_keys=True)
    run_curriculum(
        tmp_path,
        data="synthetic",
        stages=["vae"],
        overrides={"vae": {"recolour": 0.25}},
        progress=False,
        log=lambda s: None,
    )
    assert recorded[0].options["recolour"] == 0.25 and recorded[0].init is None
    assert json.dumps(TINY_CURRICULUM, sort_keys=True) == before


def test_overrides_for_an_unknown_stage_are_refused(tmp_path, recorded):
    with pytest.raises(ValueError, match="'nope'"):
        run_curriculum(tmp_path, data="synthetic", overrides={"nope": {"lr": 1}}, log=print)
    assert not recorded


def test_cli_set_reaches_the_stage(tmp_path, recorded, capsys):
    init = tmp_path / "shipped"
    init.mkdir()
    argv = ["train", "all", "--work", str(tmp_path / "w"), "--data", "synthetic"]
    argv += ["--stages", "refiner", "--init", str(init), "--set", "refiner.lr=3e-4"]
    argv += ["--set", "refiner.minutes=2", "--no-progress"]
    assert main(argv) == 0
    (tc,) = recorded
    assert tc.init == str(init) and tc.lr == 3e-4 and tc.max_minutes == 2.0


def test_cli_set_windows_sizes_the_stage_s_latent_cache(tmp_path, recorded):
    argv = ["train", "all", "--work", str(tmp_path / "w"), "--data", "synthetic"]
    argv += ["--stages", "base,ode", "--set", "base.windows=768", "--no-progress"]
    assert main(argv) == 0
    base, ode = recorded
    assert base.max_windows == 768 and "windows" not in base.options
    assert ode.max_windows == 256  # the recipe's, where not set


def test_cli_arch_builds_the_first_stage_with_the_changed_architecture(tmp_path, recorded):
    work = tmp_path / "w"
    argv = [
        "train",
        "all",
        "--work",
        str(work),
        "--data",
        "synthetic",
        "--stages",
        "vae,vae-stream",
    ]
    argv += ["--arch", "vae.base_channels=24", "--arch", "vae.channel_mults=[2,3,6]"]
    assert main([*argv, "--no-progress"]) == 0
    vae, stream = recorded
    assert vae.init is None and vae.model_config.vae.base_channels == 24
    assert vae.model_config.vae.channel_mults == (2, 3, 6)
    assert vae.model_config.dit == type(vae.model_config.dit)()  # the rest is the preset's
    # the next stage starts from the first one's checkpoint, which carries its config
    assert stream.init == str(work / "ckpt" / "vae" / "final")
    saved = json.loads((work / "curriculum.json").read_text())
    assert saved["arch"] == ["vae.base_channels=24", "vae.channel_mults=[2,3,6]"]


def _micro_pipe(seed):
    from model_core.pipeline import LPMPipeline

    from .conftest import micro_config

    return LPMPipeline.build(config=micro_config(), seed=seed)


def test_ship_takes_the_decoder_from_a_run_on_the_same_encoder(tmp_path):
    import torch

    from model_core.pipeline import LPMPipeline
    from model_core.train.curriculum import ship_checkpoint

    gens, dec = _micro_pipe(0), _micro_pipe(0)
    with torch.no_grad():  # a decoder trained apart: same encoder, other decoder weights
        for w in dec.model.vae.decoder.parameters():
            w.add_(0.25)
        for w in dec.model.backbone.parameters():
            w.mul_(-1.0)  # must not come along
    gens.save(tmp_path / "gens")
    dec.save(tmp_path / "dec")
    report = ship_checkpoint(
        tmp_path / "gens", tmp_path / "ship", log=lambda s: None, decoder_from=tmp_path / "dec"
    )
    assert report["decoder_from"] == str(tmp_path / "dec")
    shipped = LPMPipeline.load(tmp_path / "ship")
    for name, w in shipped.model.vae.decoder.state_dict().items():
        assert torch.equal(w, dec.model.vae.decoder.state_dict()[name].half().float()), name
    for name, w in shipped.model.backbone.state_dict().items():
        assert torch.equal(w, gens.model.backbone.state_dict()[name].half().float()), name


def test_ship_refuses_a_decoder_that_reads_another_latent_space(tmp_path):
    from model_core.train.curriculum import ship_checkpoint

    _micro_pipe(0).save(tmp_path / "gens")
    _micro_pipe(1).save(tmp_path / "other")  # another encoder
    with pytest.raises(ValueError, match="encoder differs"):
        ship_checkpoint(
            tmp_path / "gens",
            tmp_path / "ship",
            log=lambda s: None,
            decoder_from=tmp_path / "other",
        )
    assert not (tmp_path / "ship").exists()


def test_ship_refuses_a_decoder_trained_under_other_latent_statistics(tmp_path):
    from model_core.train.curriculum import ship_checkpoint

    gens, dec = _micro_pipe(0), _micro_pipe(0)
    dec.model.vae.latent_std.mul_(2.0)  # same encoder, latents scaled otherwise
    gens.save(tmp_path / "gens")
    dec.save(tmp_path / "dec")
    with pytest.raises(ValueError, match="latent_std"):
        ship_checkpoint(
            tmp_path / "gens", tmp_path / "ship", log=lambda s: None, decoder_from=tmp_path / "dec"
        )
