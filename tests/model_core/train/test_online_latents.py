"""`lpm train online-latents` and the `vae-decoder` stage's `gen_latents`: the decoder taught
to draw the footage's mouth opening from the Online model's own latents."""

import json

import pytest
import torch

from model_core.cli import main
from model_core.model import build_model
from model_core.train.config import TrainConfig
from model_core.train.gen_latents import OnlineLatents, generate_online
from model_core.train.loop import Trainer, encoder_digest
from model_core.train.mouth_reader import LPMMouthReader


@pytest.fixture(scope="module")
def online_latents(micro_cfg, micro_cache, tmp_path_factory):
    """The micro model's Online latents of the fixed window, saved as the CLI saves them."""
    model = build_model(micro_cfg, seed=0)
    z = generate_online(model, micro_cache, [0], seed=0)
    gen = OnlineLatents(
        latents=z.half(),
        picture=micro_cache.pictures[:1],
        mouth=micro_cache.mouth[:1].float(),
        mouth_open=micro_cache.mouth_open[:1].float(),
        identities=micro_cache.identities[:1],
        checkpoint="micro seed 0",
        encoder_version=encoder_digest(model.vae),
    )
    path = tmp_path_factory.mktemp("gen") / "online.pt"
    gen.save(path)
    return path


def test_online_latents_are_the_window_s_shape_and_repeat_with_the_seed(micro_cfg, micro_cache):
    model = build_model(micro_cfg, seed=0)
    a = generate_online(model, micro_cache, [0, 1], seed=3)
    b = generate_online(model, micro_cache, [0, 1], seed=3)
    c = generate_online(model, micro_cache, [0, 1], seed=4)
    assert a.shape == micro_cache.latents[:2].shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_the_file_round_trips_and_refuses_other_files(online_latents, tmp_path):
    gen = OnlineLatents.load(online_latents)
    z, mouth, opening = gen.batch([0])
    # the framed picture is frame 0, as the bench's decoding starts from it
    assert z.shape[2] == 1 + gen.latents.shape[2] and z.dtype == torch.float32
    assert mouth.shape[-1] == 4 and opening.shape[:2] == gen.latents.shape[::2][:2]
    torch.save({"latents": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file of Online latents"):
        OnlineLatents.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no such file"):
        OnlineLatents.load(tmp_path / "missing.pt")


def _config(tmp_path, reader, gen, steps=4, **options):
    return TrainConfig(
        stage="vae-decoder",
        out=str(tmp_path / "run"),
        steps=steps,
        lr=3e-3,
        warmup=1,
        batch=1,
        progress=False,
        checkpoint_every=2,
        options={"frames": 9, "mouth_reader": str(reader), "gen_latents": str(gen), **options},
    )


@pytest.fixture(scope="module")
def reader_path(tmp_path_factory):
    """A frozen reader whose reading responds to the pixels (a random one at its initial
    scale reads about 0 whatever it is shown, and its gradient is as small)."""
    torch.manual_seed(0)
    reader = LPMMouthReader(width=8)
    with torch.no_grad():
        reader.net[-1].weight.mul_(30.0)
    path = tmp_path_factory.mktemp("reader") / "reader.safetensors"
    reader.save(path)
    return path


def test_gen_read_falls_and_the_anchor_holds_the_rest(
    tmp_path, micro_cfg, micro_source, fixed_cache, reader_path, online_latents
):
    """With only the generated latents' loss (no footage mouth loss), the reader's error on
    the decoded mouth falls in a few dozen steps; at the first step the decoder is its own
    anchor, so the anchor term starts at 0 and only then grows."""
    torch.manual_seed(0)
    tc = _config(tmp_path, reader_path, online_latents, steps=40, gen_batch=1, gen_read=10.0)
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    history = [trainer.train_step() for _ in range(40)]
    assert history[0]["gen_anchor_l1"] == 0.0
    assert history[-1]["gen_anchor_l1"] > 0.0
    first = sum(h["gen_read_mse"] for h in history[:5]) / 5
    last = sum(h["gen_read_mse"] for h in history[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    # the anchor is a frozen copy: not trained, not saved in the model
    anchor = trainer.objective.gen_anchor
    assert not any(p.requires_grad for p in anchor.parameters())
    assert not any("gen_anchor" in k for k in trainer.model.state_dict())


def test_a_resumed_run_holds_to_the_decoder_it_started_from(
    tmp_path, micro_cfg, micro_source, fixed_cache, reader_path, online_latents
):
    torch.manual_seed(0)
    tc = _config(tmp_path, reader_path, online_latents, steps=2)
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    start = {k: v.clone() for k, v in trainer.objective.gen_anchor.state_dict().items()}
    trainer.run()
    tc2 = _config(tmp_path, reader_path, online_latents, steps=4)
    tc2.resume = True
    resumed = Trainer(tc2, micro_cfg, source=micro_source, cache=fixed_cache)
    assert resumed.resume()
    # the model is the trained one; the anchor, the one training started from, not the model
    assert isinstance(resumed.objective.reader, LPMMouthReader)
    for k, v in resumed.objective.gen_anchor.state_dict().items():
        assert torch.equal(v, start[k]), k
    changed = any(not torch.equal(v, start[k]) for k, v in resumed.model.vae.state_dict().items())
    assert changed


def test_gen_latents_of_another_encoder_are_refused(
    tmp_path, micro_cfg, micro_source, fixed_cache, reader_path, online_latents
):
    gen = OnlineLatents.load(online_latents)
    gen.encoder_version = "another"
    other = tmp_path / "other.pt"
    gen.save(other)
    with pytest.raises(ValueError, match="another VAE encoder"):
        Trainer(
            _config(tmp_path, reader_path, other), micro_cfg, source=micro_source, cache=fixed_cache
        )
    with pytest.raises(ValueError, match="gen_latents needs mouth_reader=PATH"):
        Trainer(
            _config(tmp_path, tmp_path / "no-reader", online_latents),
            micro_cfg,
            source=micro_source,
            cache=fixed_cache,
        )


def test_cli_refuses_bad_arguments_with_exit_2(tmp_path, capsys):
    assert main(["train", "online-latents", "--data", "synthetic", "--out", "x.pt"]) == 2
    assert "--init is required" in capsys.readouterr().err
    args = ["train", "online-latents", "--data", "synthetic", "--init", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "PATH.pt" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "x.pt"), "--option", "steps=3"]) == 2
    assert "windows=" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "none"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_cli_streams_a_checkpoint_over_windows(tmp_path, capsys):
    from model_core.pipeline import LPMPipeline

    from .conftest import micro_config

    LPMPipeline.build(config=micro_config(), seed=0).save(tmp_path / "ckpt")
    out = tmp_path / "online.pt"
    argv = ["train", "online-latents", "--init", str(tmp_path / "ckpt"), "--data", "synthetic"]
    argv += ["--out", str(out), "--option", "windows=2", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["windows"] == 2 and summary["stage"] == "online-latents"
    gen = OnlineLatents.load(out)
    model = LPMPipeline.load(tmp_path / "ckpt").model
    assert gen.encoder_version == encoder_digest(model.vae)
    assert len(gen) == 2 and not gen.mouth_open.isnan().all()
