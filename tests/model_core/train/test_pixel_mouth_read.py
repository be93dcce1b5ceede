"""`mouth_read` in the generator stages: the generated clean latent decoded by the frozen VAE,
and a frozen pixel mouth reader's error on the drawn mouth against the footage's opening."""

import numpy as np
import pytest
import torch

from model_core.model import build_model
from model_core.train.objectives import make_objective


def _objective(micro_cfg, stage, reader_path, **options):
    model = build_model(micro_cfg, seed=0)
    return make_objective(stage, model, {"mouth_read": 1.0, "mouth_reader": reader_path, **options})


@pytest.mark.parametrize("stage", ["ode", "dmd-off", "dmd-on", "refiner"])
def test_every_generator_stage_adds_the_drawn_mouth_error_and_its_gradient(
    micro_cfg, micro_cache, reader_path, stage
):
    obj = _objective(micro_cfg, stage, reader_path)
    assert obj.needs_mouth and obj.needs_mouth_open
    obj.prepare(micro_cache)
    batch = micro_cache.batch([0, 1])
    reader_before = {k: v.clone() for k, v in obj.mouth_reader.state_dict().items()}
    torch.manual_seed(0)
    loss, metrics = obj.step(batch)
    assert metrics["mouth_read_mse"] > 0
    # The same stage on the same model without the term: the losses differ by exactly it
    # (decoding and reading draw no random numbers, so both steps see the same noise).
    without = make_objective(stage, build_model(micro_cfg, seed=0), {})
    without.prepare(micro_cache)
    torch.manual_seed(0)
    base_loss, base_metrics = without.step(batch)
    assert "mouth_read_mse" not in base_metrics
    assert float((loss - base_loss).detach()) == pytest.approx(
        metrics["mouth_read_mse"], rel=1e-4, abs=1e-6
    )
    trained = obj.trainable_modules()[0]
    for p in obj.model.parameters():
        p.grad = None
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    for k, v in obj.mouth_reader.state_dict().items():
        assert torch.equal(v, reader_before[k])
    assert not any(p.requires_grad for p in obj.mouth_reader.parameters())
    assert not any("reader" in k for k in obj.model.state_dict())


def test_the_drawn_mouth_error_falls_when_the_refiner_trains_on_it(
    micro_cfg, micro_cache, reader_path
):
    """On one fixed batch, the Refiner learns latents whose decoded mouth the reader reads
    closer to the footage's opening (the VAE is frozen: only the Refiner moves). A micro
    model's random decoder draws no face, so the fall is slow (0.28 -> 0.24 here)."""
    obj = _objective(micro_cfg, "refiner", reader_path, mouth_read=50.0, l1_weight=0.0)
    obj.prepare(micro_cache)
    batch = micro_cache.batch([0, 1])
    obj.model.requires_grad_(False)
    params = [p for m in obj.trainable_modules() for p in m.requires_grad_(True).parameters()]
    vae_before = {k: v.clone() for k, v in obj.model.vae.state_dict().items()}
    opt = torch.optim.Adam(params, lr=1e-2)

    def read(step):
        torch.manual_seed(step % 4)  # the same four noise draws over and over
        return obj.step(batch)

    first = [read(s)[1]["mouth_read_mse"] for s in range(4)]
    for step in range(60):
        loss, _ = read(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = [read(s)[1]["mouth_read_mse"] for s in range(4)]
    assert np.mean(last) < 0.95 * np.mean(first), (first, last)
    for k, v in obj.model.vae.state_dict().items():
        assert torch.equal(v, vae_before[k])


def test_the_error_s_gradient_moves_a_latent_towards_the_footage_s_opening(
    micro_cfg, micro_cache, reader_path
):
    obj = _objective(micro_cfg, "refiner", reader_path)
    obj.model.requires_grad_(False)
    batch = micro_cache.batch([0, 1])
    x = batch.x0.float().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=5e-2)
    errors = []
    for _ in range(60):
        error = obj.pixel_read_error(x, batch)
        errors.append(float(error.detach()))
        opt.zero_grad()
        error.backward()
        opt.step()
    assert errors[-1] < 0.8 * errors[0], errors  # 0.27 -> 0.18 here


def test_pixel_read_error_skips_frames_without_an_opening(micro_cfg, micro_cache, reader_path):
    obj = _objective(micro_cfg, "refiner", reader_path)
    batch = micro_cache.batch([0])
    x = batch.x0.float().requires_grad_(True)
    assert float(obj.pixel_read_error(x, batch).detach()) > 0
    batch.mouth_open = torch.full_like(batch.mouth_open, float("nan"))
    nothing = obj.pixel_read_error(x, batch)
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad  # no NaN, the graph kept
    batch.mouth_open = None
    with pytest.raises(ValueError, match="refiner mouth_read needs the footage's mouth openings"):
        obj.pixel_read_error(x, batch)


@pytest.mark.parametrize(
    ("stage", "options", "message"),
    [
        ("base", {"mouth_read": 1.0}, "base has no mouth_read option"),
        ("dpo", {"mouth_read": 1.0}, "dpo has no mouth_read option"),
        ("refiner", {"mouth_read": -1.0}, "mouth_read must be >= 0"),
        ("ode", {"mouth_read": 1.0, "mouth_reader": "/nonexistent"}, "ode mouth_read needs"),
        ("refiner", {"mouth_read": 1.0}, "refiner mouth_read needs mouth_reader=PATH"),
    ],
)
def test_bad_mouth_read_options_are_refused(micro_cfg, stage, options, message):
    with pytest.raises(ValueError, match=message):
        make_objective(stage, build_model(micro_cfg, seed=0), options)
