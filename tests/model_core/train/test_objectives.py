"""Each stage's objective learns: its loss falls on a tiny fixed batch within a few dozen steps."""

import pytest

from model_core.train.config import TrainConfig
from model_core.train.loop import Trainer

# stage -> (steps, lr, objective options): the micro model, one fixed 2-second clip.
CASES = {
    "vae": (30, 3e-3, {"frames": 5, "motion_weight": 2.0}),
    "vae-stream": (30, 3e-3, {"frames": 17, "chunk": 8, "motion_weight": 2.0}),
    "base": (30, 3e-3, {"motion_weight": 1.0, "mouth_weight": 4.0}),
    "ode": (
        30,
        3e-3,
        {"ode_steps": 2, "context_noise": 0.3, "mouth_weight": 4.0, "audio_guidance": 2.0},
    ),
    "dmd-off": (
        20,
        1e-3,
        {
            "generator_every": 1,
            "context_noise": 0.3,
            "mouth_weight": 4.0,
            "mouth_regress": 1.0,
            "audio_guidance": 2.0,
        },
    ),
    "dmd-on": (20, 1e-3, {"generator_every": 1, "chunks": 2}),
    "refiner": (30, 3e-3, {"mouth_weight": 4.0}),
    "vae-decoder": (30, 3e-3, {"frames": 25, "mouth_weight": 6.0}),
}
# dpo learns from preference pairs: tests/model_core/train/test_dpo.py


def mean(xs):
    return sum(xs) / len(xs)


def fixed_batch_trainer(stage, steps, lr, options, tmp_path, micro_cfg, micro_source, cache):
    """A batch-2 trainer of one stage on the fixed clip, no checkpoints on the way."""
    tc = TrainConfig(
        stage=stage,
        out=str(tmp_path),
        steps=steps,
        lr=lr,
        warmup=1,
        batch=2,
        checkpoint_every=1000,
        progress=False,
        options=options,
    )
    return Trainer(tc, micro_cfg, source=micro_source, cache=cache)


@pytest.mark.parametrize("stage", list(CASES))
def test_loss_decreases_on_a_fixed_batch(stage, tmp_path, micro_cfg, micro_source, fixed_cache):
    steps, lr, options = CASES[stage]
    trainer = fixed_batch_trainer(
        stage, steps, lr, options, tmp_path, micro_cfg, micro_source, fixed_cache
    )
    losses = [trainer.train_step()["loss"] for _ in range(steps)]
    k = max(3, steps // 5)
    assert mean(losses[-k:]) < mean(losses[:k]), losses


def test_the_teachers_guidance_on_the_audio_alone_takes_the_audio_away_and_nothing_else():
    """`guided_velocity` with `audio_scale`: the extra branch is the conditional one without
    its audio (caption kept), and it is only run when the conditional branch has audio."""
    import torch

    from model_core.train.objectives.conditioning import guided_velocity

    calls = []

    def net(x, t, context, audio):
        calls.append((context, audio))
        return x * 0 + {("c", "a"): 1.0, ("c", None): 0.5, ("u", None): 0.0}[(context, audio)]

    x, t = torch.zeros(1, 1, 2, 1, 1), torch.zeros(1)
    kw, ukw = dict(context="c", audio="a"), dict(context="u", audio=None)
    v = guided_velocity(net, x, t, kw, ukw, 2.0, audio_scale=3.0)
    assert torch.allclose(v, torch.full_like(x, 0.0 + 2 * 1.0 + 3 * 0.5))
    assert calls == [("c", "a"), ("u", None), ("c", None)]
    calls.clear()
    v = guided_velocity(net, x, t, dict(context="c", audio=None), ukw, 1.0, audio_scale=3.0)
    assert torch.allclose(v, torch.full_like(x, 0.5)) and calls == [("c", None)]


def test_decoder_stage_leaves_the_encoder_and_latent_statistics_alone(
    tmp_path, micro_cfg, micro_source, fixed_cache
):
    """Every latent the DiT stages learned must stay valid: only the decoder may move."""
    import torch

    tc = TrainConfig(
        stage="vae-decoder",
        out=str(tmp_path),
        steps=3,
        lr=3e-3,
        warmup=1,
        batch=1,
        progress=False,
        options={"frames": 25},
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    vae = trainer.model.vae
    enc = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    stats = (vae.latent_mean.clone(), vae.latent_std.clone())
    trainer.run()
    assert all(torch.equal(v, vae.encoder.state_dict()[k]) for k, v in enc.items())
    assert torch.equal(stats[0], vae.latent_mean) and torch.equal(stats[1], vae.latent_std)
    assert not all(torch.equal(v, vae.decoder.state_dict()[k]) for k, v in dec.items())


def test_stream_vae_stage_rejects_a_clip_layout_it_cannot_cut(micro_cfg):
    from model_core.model import LPMModel
    from model_core.train.objectives import make_objective

    model = LPMModel(micro_cfg)
    with pytest.raises(ValueError, match="chunk a multiple of 4"):
        make_objective("vae-stream", model, {"frames": 17, "chunk": 6})
    obj = make_objective("vae-stream", model, {"frames": 49, "chunk": 12})
    assert obj.max_prefix == 9  # up to 36 frames of warm-up before the trained chunk


def _encoder_drift(vae, start, clip):
    """Mean squared distance of the normalised posterior means of `clip` under the VAE's
    encoder now and under the encoder weights `start`."""
    import copy

    import torch

    with torch.no_grad():
        now = vae.encode(clip)
        old = copy.deepcopy(vae)
        old.encoder.load_state_dict(start)
        return float((now - old.encode(clip)).pow(2).mean())


def test_stream_vae_anchor_holds_the_encoder_near_where_it_started(
    tmp_path, micro_cfg, micro_source, fixed_cache
):
    """With `anchor`, vae-stream still trains encoder and decoder but keeps the latent space a
    trained DiT reads: the encoder moves less than without it, the latent statistics are
    kept, and the anchor survives a resume."""
    import torch

    def run(out, anchor, steps=12, seed=5):
        tc = TrainConfig(
            stage="vae-stream",
            out=str(out),
            steps=steps,
            lr=3e-3,
            warmup=1,
            batch=2,
            checkpoint_every=6,
            progress=False,
            seed=seed,
            resume=True,
            options={"frames": 17, "chunk": 8, "anchor": anchor},
        )
        return Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)

    free, held = run(tmp_path / "free", 0.0), run(tmp_path / "held", 50.0)
    start = {k: v.clone() for k, v in held.model.vae.encoder.state_dict().items()}
    stats = (held.model.vae.latent_mean.clone(), held.model.vae.latent_std.clone())
    first = held.train_step()
    assert first["anchor_mse"] == pytest.approx(0.0, abs=1e-10)  # the same encoder, twice
    free.run(), held.run()
    assert "anchor_mse" not in free.train_step()

    clip = held.batches.next()[:, :, :9]
    drift_free = _encoder_drift(free.model.vae, start, clip)
    drift_held = _encoder_drift(held.model.vae, start, clip)
    assert 0 < drift_held < 0.5 * drift_free, (drift_held, drift_free)
    assert torch.equal(held.model.vae.latent_mean, stats[0])
    assert torch.equal(held.model.vae.latent_std, stats[1])
    assert not torch.equal(free.model.vae.latent_std, stats[1])

    # resumed (with another seed, so another random start) from the run's last checkpoint:
    # the anchor is still the encoder that run started from
    resumed = run(tmp_path / "held", 50.0, steps=14, seed=6)
    assert resumed.resumed_from is not None
    for k, v in resumed.objective.anchor.encoder.state_dict().items():
        assert torch.equal(v, start[k]), k
    with pytest.raises(ValueError, match="anchor must be >= 0"):
        run(tmp_path / "bad", -1.0)


def test_decoder_stage_gives_the_decoder_the_voice(tmp_path, micro_cfg, micro_source, fixed_cache):
    """Option `audio` adds the decoder's audio path to a checkpoint without one: batches carry
    the speaking track, the new layers train (at their own learning rate), the checkpoint
    records the path and loads strictly, and the shared config is left as it was."""
    import torch

    from model_core.checkpoint import read_checkpoint
    from model_core.model import build_model

    tc = TrainConfig(
        stage="vae-decoder",
        out=str(tmp_path),
        steps=6,
        lr=3e-3,
        warmup=1,
        batch=2,
        progress=False,
        options={"frames": 25, "audio": 8, "latent_smooth": 0.5, "audio_lr_scale": 2.0},
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    assert micro_cfg.vae.decoder_audio == 0  # not mutated
    assert trainer.cfg.vae.decoder_audio == 8 and trainer.model.vae.hears
    batch = trainer.batches.next()
    assert batch.video.shape[2] == 25 and batch.pcm.shape == (2, -(-25 * 16000 // 24) + 1024)
    assert batch.mouth is None  # not asked for
    lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
    assert lrs == [3e-3, 6e-3]
    out_w = trainer.model.vae.decoder.audio_inject[0].out.weight
    assert float(out_w.detach().abs().sum()) == 0.0
    result = trainer.run()
    assert float(out_w.detach().abs().sum()) > 0.0  # the zero-initialised residual learned
    cfg, state, _ = read_checkpoint(result["final"])
    assert cfg.vae.decoder_audio == 8
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    z = torch.randn(1, cfg.vae.z_dim, 3, 4, 4)
    with torch.no_grad():
        quiet = model.vae.decode(z)
        loud = model.vae.decode(z, audio=torch.randn(1, 9 * 700))
    assert float((quiet - loud).abs().max()) > 0.0


@pytest.mark.parametrize(
    "options",
    [
        {"audio": -1},
        {"latent_smooth": 1.5},
        {"smooth_window": 0},
        {"mouth_smooth": -0.1},
        {"mouth_smooth": 0.5, "mouth_shuffle": 0.6},
        {"mouth_outside": -1},
    ],
)
def test_decoder_stage_refuses_bad_audio_options(micro_cfg, options):
    from model_core.model import LPMModel
    from model_core.train.objectives import make_objective

    with pytest.raises(ValueError, match="vae-decoder needs"):
        make_objective("vae-decoder", LPMModel(micro_cfg), options)


def test_decoder_audio_only_needs_the_audio_path(micro_cfg):
    from model_core.model import LPMModel
    from model_core.train.objectives import make_objective

    with pytest.raises(ValueError, match="audio_only needs the audio path"):
        make_objective("vae-decoder", LPMModel(micro_cfg), {"audio_only": 1})


def test_decoder_audio_only_trains_the_voice_and_nothing_else(
    tmp_path, micro_cfg, micro_source, fixed_cache
):
    """`audio_only` with the mouth-only loss and the mouth's latents smoothed: the batches
    carry mouth regions, only the audio path's weights move, and its loss falls."""
    import torch

    tc = TrainConfig(
        stage="vae-decoder",
        out=str(tmp_path),
        steps=30,
        lr=3e-3,
        warmup=1,
        batch=2,
        progress=False,
        options={
            "frames": 25,
            "audio": 8,
            "audio_only": 1,
            "mouth_only": 1,
            "mouth_smooth": 1.0,
            "smooth_window": 7,
        },
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    dec = trainer.model.vae.decoder
    audio = {id(p) for m in (dec.audio, dec.audio_inject) for p in m.parameters()}
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert trained == audio
    before = {n: p.detach().clone() for n, p in dec.named_parameters() if id(p) not in audio}
    batch = trainer.batches.next()
    assert batch.mouth is not None and batch.pcm is not None
    losses = [trainer.train_step()["loss"] for _ in range(30)]
    assert mean(losses[-6:]) < mean(losses[:6]), losses
    for n, p in dec.named_parameters():
        if n in before:
            assert torch.equal(p.detach(), before[n]), n
    assert float(dec.audio_inject[-1].out.weight.detach().abs().sum()) > 0


def test_latent_mouth_mask_covers_the_mouth_s_cells_and_their_neighbours():
    import torch

    from model_core.train.objectives.vae_decoder import latent_mouth_mask

    cover = torch.zeros(2, 1, 5, 64, 64)
    cover[0, :, 2, 40:48, 24:40] = 1.0  # one frame's mouth, pixels 40-47 x 24-39
    mask = latent_mouth_mask(cover, (8, 8))
    assert mask.shape == (2, 1, 1, 8, 8) and mask.dtype == torch.bool
    cells = mask[0, 0, 0]
    assert cells[5, 3:5].all()  # the mouth's own cells (8-pixel cells)
    assert cells[4:7, 2:6].all() and int(cells.sum()) == 12  # grown by one cell
    assert not mask[1].any()  # a clip without a mouth region keeps every latent


def test_smoothed_latents_keep_frame_zero_and_lose_fast_motion():
    import torch

    from model_core.train.objectives.vae_decoder import smooth_latents

    t = torch.arange(13, dtype=torch.float32)
    z = torch.sin(t * 2.5).view(1, 1, 13, 1, 1).expand(1, 2, 13, 2, 2).clone()
    s = smooth_latents(z, 5)
    assert torch.equal(s[:, :, 0], z[:, :, 0])
    assert float(s[:, :, 1:].std()) < 0.5 * float(z[:, :, 1:].std())
    flat = torch.ones(1, 2, 9, 2, 2)
    assert torch.allclose(smooth_latents(flat, 5), flat)


@pytest.mark.parametrize("option", ["audio_norm", "ref_concat"])
def test_base_stage_architecture_options_are_recorded_in_its_checkpoint(
    option, tmp_path, micro_cfg, micro_source, fixed_cache
):
    """`audio_norm` (no weights) and `ref_concat` (zero-initialised input channels, which
    then learn) turn on for the run, leave the shared config alone, and reload strictly."""
    from model_core.checkpoint import read_checkpoint
    from model_core.model import build_model

    tc = TrainConfig(
        stage="base",
        out=str(tmp_path),
        steps=3,
        lr=1e-3,
        warmup=1,
        batch=1,
        progress=False,
        options={option: 1},
    )
    trainer = Trainer(tc, micro_cfg, source=micro_source, cache=fixed_cache)
    assert getattr(micro_cfg.dit, option) is False and getattr(trainer.cfg.dit, option) is True
    new_inputs = trainer.model.base.patch_embedding.weight[:, micro_cfg.vae.z_dim :]
    assert float(new_inputs.detach().abs().sum()) == 0.0  # none, or zero-initialised
    result = trainer.run()
    learned = trainer.model.base.patch_embedding.weight.detach()[:, micro_cfg.vae.z_dim :]
    assert (float(learned.abs().sum()) > 0.0) == (option == "ref_concat")
    cfg, state, _ = read_checkpoint(result["final"])
    assert getattr(cfg.dit, option) is True
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    assert model.base.blocks[0].audio_attn.normalize == (option == "audio_norm")


@pytest.mark.parametrize("how", ["mouth_smooth", "mouth_shuffle"])
def test_unsynced_mouth_changes_the_mouth_s_cells_and_nothing_else(micro_cfg, how):
    """`mouth_smooth` rests the mouth's latent cells, `mouth_shuffle` reorders them in time
    (a moving mouth out of step with the voice); every other cell and frame 0 stay."""
    import torch

    from model_core.model import LPMModel
    from model_core.train.objectives import make_objective

    obj = make_objective("vae-decoder", LPMModel(micro_cfg), {how: 1.0, "smooth_window": 9})
    torch.manual_seed(0)
    z = torch.randn(2, 4, 9, 4, 4)
    mouth = torch.full((2, 33, 4), float("nan"))
    mouth[0] = torch.tensor([8.0, 16.0, 16.0, 24.0])  # clip 0: pixels 8-15 x 16-23
    out, n = obj.unsync_mouth(z, obj.mouth_region(mouth, (32, 32)))
    assert n == 2
    cells = torch.zeros(4, 4, dtype=torch.bool)
    cells[1:4, 0:3] = True  # latent cell (2, 1) grown by one
    assert torch.equal(out[0][..., ~cells], z[0][..., ~cells])
    assert torch.equal(out[1], z[1])  # no mouth region, nothing to hide
    assert torch.equal(out[:, :, 0], z[:, :, 0])
    inside, orig = out[0][:, 1:][..., cells], z[0][:, 1:][..., cells]
    assert not torch.equal(inside, orig)
    if how == "mouth_shuffle":  # the same mouths, in another order
        assert torch.equal(inside.sort(dim=1).values, orig.sort(dim=1).values)
    else:
        assert float(inside.std(dim=1).mean()) < 0.5 * float(orig.std(dim=1).mean())


def test_the_refiner_learns_the_mouth_of_chunks_the_backbone_drew_from_noise(
    tmp_path, micro_cfg, micro_source, fixed_cache
):
    """`heard`: every step's input is the Backbone's own sample after a chunk of ground truth,
    scored in the mouth region; the Backbone stays frozen and the error falls."""
    import torch

    options = {"heard": 1.0, "heard_outside": 0.2}
    trainer = fixed_batch_trainer(
        "refiner", 30, 3e-3, options, tmp_path, micro_cfg, micro_source, fixed_cache
    )
    backbone = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}
    logs = [trainer.train_step() for _ in range(30)]
    losses = [m["loss"] for m in logs]
    assert all("heard_mse" in m and "heard_backbone_mse" in m for m in logs)
    assert mean(losses[-6:]) < mean(losses[:6]), losses
    after = trainer.model.backbone.state_dict()
    assert all(torch.equal(backbone[k], after[k]) for k in backbone)


@pytest.mark.parametrize("options", [{"heard": 1.5}, {"heard": -0.1}, {"heard_outside": -1.0}])
def test_the_refiner_refuses_a_heard_share_outside_0_to_1(options, micro_cfg):
    from model_core.model import LPMModel
    from model_core.train.objectives import make_objective

    with pytest.raises(ValueError, match="refiner needs 0 <= heard <= 1 and heard_outside >= 0"):
        make_objective("refiner", LPMModel(micro_cfg), options)
