"""Flow matching: the training objective and the multi-step sampler with classifier-free
guidance used by the Base model.

Convention (rectified flow, as Wan2.1): x_t = (1 - t) * x0 + t * noise, t in [0, 1], and the
network predicts the velocity v = noise - x0, so x0 = x_t - t * v.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Warp t towards the noisy end; shift > 1 spends more steps at high noise."""
    return shift * t / (1 + (shift - 1) * t)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """t broadcasts over x0: shape (B,) or (B, F) for per-latent-frame times on (B, C, F, H, W)."""
    t = _expand(t, x0)
    return (1 - t) * x0 + t * noise


def predict_x0(xt: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return xt - _expand(t, xt) * v


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if t.dim() == 1:
        return t.view(-1, *([1] * (like.dim() - 1)))
    if t.dim() == 2:  # (B, F) per latent frame
        return t[:, None, :, None, None]
    return t


def sample_training_timesteps(
    batch: int, shift: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Logit-normal times (as in SD3/Wan training), optionally shifted."""
    u = torch.sigmoid(torch.randn(batch, generator=generator))
    return shift_timesteps(u, shift) if shift != 1.0 else u


def flow_matching_loss(
    v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    err = (v_pred - (noise - x0)).pow(2).mean(dim=tuple(range(1, v_pred.dim())))
    return (err * weight).mean() if weight is not None else err.mean()


def guide(
    v_cond: torch.Tensor,
    v_uncond: torch.Tensor | None,
    scale: float,
    v_no_audio: torch.Tensor | None = None,
    audio_scale: float = 0.0,
) -> torch.Tensor:
    """Classifier-free guidance, v_u + scale * (v_c - v_u), plus `audio_scale` times the
    audio's own direction (v_c - v_no_audio: the same conditions without the audio) where
    that branch is given. The Base model drops caption, audio and both at training time,
    so all three branches are ones it has learnt."""
    v = v_cond if v_uncond is None else v_uncond + scale * (v_cond - v_uncond)
    if v_no_audio is not None and audio_scale:
        v = v + audio_scale * (v_cond - v_no_audio)
    return v


def sample_euler_cfg(
    velocity: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor],
    noise: torch.Tensor,
    steps: int,
    guidance_scale: float = 1.0,
    shift: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    audio_guidance: float = 0.0,
    without_audio: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Integrate from t=1 (noise) to t=0 with Euler steps on a shifted schedule.

    velocity(x, t, conditional) -> v. With guidance_scale != 1 each step also evaluates the
    unconditional branch: v = v_u + g * (v_c - v_u). With `audio_guidance` != 0 it also
    evaluates `without_audio(x, t)` (every condition but the audio) and adds
    audio_guidance * (v_c - v_without_audio) (`guide`).
    """
    if audio_guidance and without_audio is None:
        raise ValueError("audio_guidance needs the without_audio velocity")
    ts = shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift)
    x = noise
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        tb = torch.full((x.shape[0],), float(t))
        v = velocity(x, tb, True)
        v_u = velocity(x, tb, False) if guidance_scale != 1.0 else None
        v_na = without_audio(x, tb) if audio_guidance else None
        x = x + (t_next - t) * guide(v, v_u, guidance_scale, v_na, audio_guidance)
        if progress is not None:
            progress(i + 1, steps)
    return x
