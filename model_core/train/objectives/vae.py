"""Stage 0, `vae`: the causal 3D VAE on the performer's footage.

Loss = L1 reconstruction + a multi-scale image-gradient term (edges and texture at three
scales: the cheap stand-in for a perceptual network, which a CPU budget cannot afford) + a
small KL towards the unit Gaussian. At the end of the stage the per-channel latent mean and
std are measured on the data and stored in the VAE, so every later stage sees unit-scale
latents.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from model_core.train.objectives import Objective


def motion_weights(x: torch.Tensor, strength: float, cap: float = 8.0) -> torch.Tensor | None:
    """Per-pixel loss weights (B, 1, T, H, W) that favour what moves: 1 + strength * the
    frame-to-frame change at that pixel (to the previous or the next frame, whichever is
    larger; channel mean) over its clip mean, capped at `cap` times the mean. A talking
    head is a still picture apart from a mouth, eyes and a head a few pixels wide; an
    unweighted loss spends nearly all its gradient on the still part and learns to draw the
    average mouth. None when `strength` is 0 or the clip is a single frame."""
    if strength <= 0 or x.shape[2] < 2:
        return None
    d = x.diff(dim=2).abs().mean(dim=1, keepdim=True)  # (B, 1, T-1, H, W)
    zero = torch.zeros_like(d[:, :, :1])
    m = torch.maximum(torch.cat([zero, d], 2), torch.cat([d, zero], 2))
    m = m / m.mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-6)
    return 1.0 + strength * m.clamp(max=cap)


def combine_weights(*weights: torch.Tensor | None) -> torch.Tensor | None:
    """The product of the given loss weights (broadcast), skipping the None ones."""
    out = None
    for w in weights:
        if w is not None:
            out = w if out is None else out * w
    return out


def weighted_mean(err: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Mean of `err` under weights `w` (broadcast; normalised so the scale of the loss does
    not depend on how much moves), or the plain mean without weights."""
    if w is None:
        return err.mean()
    w = w.expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1e-12)


def recolour(video: torch.Tensor, p: float) -> torch.Tensor:
    """Each clip of `video` (B, 3, T, H, W) in [-1, 1], with probability `p`, in other
    colours: its RGB channels permuted and each channel, by a coin toss, mirrored about
    mid-grey (48 palettes in all, every one still in range). A codec trained on a few dozen
    characters otherwise learns their palettes instead of passing colour through: the
    shipped tiny VAE drew a held-out character's purple shirt blue-grey. Drawn from torch's
    global generator, so a seeded run recolours the same way."""
    if p <= 0:
        return video
    out = []
    for clip in video:
        if float(torch.rand(())) < p:
            clip = clip[torch.randperm(3)]
            sign = torch.randint(0, 2, (3, 1, 1, 1), dtype=clip.dtype) * 2 - 1
            clip = clip * sign
        out.append(clip)
    return torch.stack(out)


def gradient_loss(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """L1 between spatial and temporal finite differences of x and y (B, C, T, H, W), at
    `scales` spatial resolutions."""
    total = x.new_zeros(())
    for s in range(scales):
        if s:
            x = F.avg_pool3d(x, (1, 2, 2))
            y = F.avg_pool3d(y, (1, 2, 2))
        for dim in (3, 4):
            total = total + (x.diff(dim=dim) - y.diff(dim=dim)).abs().mean()
        if x.shape[2] > 1:
            total = total + (x.diff(dim=2) - y.diff(dim=2)).abs().mean()
    return total / scales


class VAEObjective(Objective):
    name = "vae"
    data_kind = "frames"

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.frames_per_clip = self.option("frames", 9)
        self.w_grad = self.option("grad_weight", 1.0)
        self.w_kl = self.option("kl_weight", 1e-4)
        self.w_motion = self.option("motion_weight", 0.0)
        self.p_recolour = self.option("recolour", 0.0)

    def trainable_modules(self):
        return [self.model.vae]

    def step(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return self.reconstruction_loss(recolour(video, self.p_recolour))

    def reconstruction_loss(
        self, video: torch.Tensor, enc=None, dec=None, target: torch.Tensor | None = None
    ) -> tuple:
        """The stage's loss on one clip; `enc`/`dec` are the temporal caches of a stream
        the clip continues (None: the clip starts a stream). `target`, when given, is the
        posterior mean an anchor encoder gave the same clip: the normalised latents are
        held near it with weight `w_anchor`."""
        vae = self.model.vae
        mean, logvar = vae.encode_posterior(video, cache=enc)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        recon = vae.decode(vae.normalize(z), clamp=False, cache=dec)
        l1 = weighted_mean((recon - video).abs(), motion_weights(video, self.w_motion))
        grad = gradient_loss(recon, video)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = l1 + self.w_grad * grad + self.w_kl * kl
        metrics = {}
        if target is not None:
            drift = F.mse_loss(vae.normalize(mean), vae.normalize(target))
            loss = loss + self.w_anchor * drift
            metrics["anchor_mse"] = drift.item()
        with torch.no_grad():
            mse = F.mse_loss(recon.clamp(-1, 1), video)
            psnr = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))
        return loss, {
            "l1": l1.item(),
            "grad": grad.item(),
            "kl": kl.item(),
            "psnr": float(psnr),
            **metrics,
        }

    @torch.no_grad()
    def finalize(self, batches, clips: int = 16) -> dict[str, float]:
        """Per-channel statistics of the posterior mean, so latents are unit scale."""
        vae = self.model.vae
        zs = [
            vae.encode_posterior(batches.next())[0] for _ in range(max(1, clips // batches.batch))
        ]
        z = torch.cat([t.transpose(0, 1).flatten(1) for t in zs], dim=1)
        vae.latent_mean.copy_(z.mean(dim=1))
        vae.latent_std.copy_(z.std(dim=1).clamp_min(1e-3))
        return {"latent_std_mean": float(vae.latent_std.mean())}


class StreamVAEObjective(VAEObjective):
    """Stage `vae-stream`: the VAE in the steady state of a stream, encoder and decoder both.

    Every convolution of the causal VAE looks a few latent frames back, and stacked they see
    about 50 video frames: a VAE trained on short clips only ever meets the start of a stream,
    where the past is zero padding. Measured on the `vae` stage's result, the mouth (a few
    pixels that carry all of lip sync) is reproduced well on frames 0-12 of a clip (probe
    correlation 0.74 with the original) and ever worse later (0.44 on frames 13-24, 0.22 on
    25-44). Here each step first runs a random prefix of the clip (0 to `max_prefix` latent
    frames) through encoder and decoder without gradients, only to fill their temporal caches,
    and then trains on the next `chunk` frames entering through those warm caches, as a
    stream's later chunks do. A prefix of 0 is the start of a stream, so that case keeps
    being trained too. The latent statistics are measured again at the end, on long clips.

    Option `anchor` (weight, default 0) keeps the encoder where it started: a frozen copy of
    the VAE the stage began from encodes every clip too, and the mean squared distance of
    the two normalised posterior means joins the loss; the latent statistics are then kept,
    not measured again. That is for a VAE under a model already trained in its latent space
    (the Base and Online models read the encoder's references and write latents for the
    decoder): the decoder, and the encoder within the anchor's reach, improve while the
    space the DiT stages learnt stays put.
    """

    name = "vae-stream"

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.chunk = self.option("chunk", 12)
        self.frames_per_clip = self.option("frames", 49)
        if self.chunk % 4 or self.chunk <= 0 or (self.frames_per_clip - 1 - self.chunk) % 4:
            raise ValueError(
                f"vae-stream needs chunk a multiple of 4 and frames = 1 + 4k + chunk, "
                f"got chunk={self.chunk} frames={self.frames_per_clip}"
            )
        self.max_prefix = (self.frames_per_clip - 1 - self.chunk) // 4
        self.w_anchor = self.option("anchor", 0.0)
        if self.w_anchor < 0:
            raise ValueError(f"vae-stream anchor must be >= 0, got {self.w_anchor}")
        self.anchor = None
        if self.w_anchor > 0:
            self.anchor = copy.deepcopy(model.vae).requires_grad_(False).eval()

    def step(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from model_core.vae_layers import TemporalCache

        vae = self.model.vae
        video = recolour(video, self.p_recolour)
        k = int(torch.randint(self.max_prefix + 1, (1,)))
        enc, dec, anchored = TemporalCache(), TemporalCache(), TemporalCache()
        if k:
            with torch.no_grad():
                prefix = video[:, :, : 1 + 4 * k]
                vae.decode(vae.normalize(vae.encode_posterior(prefix, cache=enc)[0]), cache=dec)
                if self.anchor is not None:
                    self.anchor.encode_posterior(prefix, cache=anchored)
            clip = video[:, :, 1 + 4 * k : 1 + 4 * k + self.chunk]
        else:
            clip = video[:, :, : 1 + self.chunk]
        target = None
        if self.anchor is not None:
            with torch.no_grad():
                target = self.anchor.encode_posterior(clip, cache=anchored)[0]
        loss, metrics = self.reconstruction_loss(clip, enc, dec, target)
        return loss, {**metrics, "prefix": 4 * k}

    def state_dict(self) -> dict:
        return {"anchor": self.anchor.state_dict()} if self.anchor is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.anchor is not None and "anchor" in state:
            self.anchor.load_state_dict(state["anchor"])

    def finalize(self, batches, clips: int = 16) -> dict[str, float]:
        if self.anchor is not None:
            return {}  # the latent statistics of the space the anchor holds
        return super().finalize(batches, clips)
