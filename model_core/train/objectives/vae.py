"""Stage 0, `vae`: the causal 3D VAE on the performer's footage.

Loss = L1 reconstruction + a multi-scale image-gradient term (edges and texture at three
scales: the cheap stand-in for a perceptual network, which a CPU budget cannot afford) + a
small KL towards the unit Gaussian. At the end of the stage the per-channel latent mean and
std are measured on the data and stored in the VAE, so every later stage sees unit-scale
latents.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from model_core.train.data import FrameBatch
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


def smooth_latents(z: torch.Tensor, window: int) -> torch.Tensor:
    """Latents (B, C, T, h, w) with frames 1.. replaced by their moving average over `window`
    latent frames (edges repeated); frame 0 (a clip's first frame, coded alone) is kept."""
    if window <= 1 or z.shape[2] < 3:
        return z
    head, rest = z[:, :, :1], z[:, :, 1:]
    b, c, t, h, w = rest.shape
    seq = rest.permute(0, 1, 3, 4, 2).reshape(-1, 1, t)
    left, right = (window - 1) // 2, window // 2
    seq = F.avg_pool1d(F.pad(seq, (left, right), mode="replicate"), window, stride=1)
    return torch.cat([head, seq.reshape(b, c, h, w, t).permute(0, 1, 4, 2, 3)], dim=2)


def latent_mouth_mask(cover: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Pixel mouth coverage (B, 1, T, H, W) -> the latent cells (B, 1, 1, h, w) that carry the
    mouth in any frame of the clip, grown by one cell (a latent cell's content reaches its
    neighbours through the decoder's convolutions)."""
    h, w = shape
    any_frame = cover.amax(dim=2)  # (B, 1, H, W)
    cells = F.adaptive_max_pool2d(any_frame, (h, w))
    return (F.max_pool2d(cells, 3, stride=1, padding=1) > 0)[:, :, None]


class DecoderObjective(VAEObjective):
    """Last stage, `vae-decoder`: the VAE's decoder fitted to long clips with the encoder frozen.

    The `vae` stage sees short clips (1+8 frames), so its causal decoder never meets the steady
    state of a stream, where every temporal convolution sees only frames after the first:
    decoding 2 s or more then degrades with time. This stage decodes long clips (1+48 frames,
    past the decoder's temporal receptive field) from the frozen encoder's latents. The
    encoder, the latent statistics and so every latent the DiT stages learned stay as they
    were; only the pixels a latent turns into improve.

    Option `audio` (an embedding width, default 0) gives the decoder the character's voice at
    the frame rate (model_core/vae_audio.py), creating that path when the checkpoint has none;
    its new layers train at `audio_lr_scale` times the stage's learning rate. With
    `latent_smooth` (a probability) a clip's latents are first smoothed along time over
    `smooth_window` latent frames: the mouth's syllable-rate movement is gone from them while
    the slow head motion stays, so the decoder must take the mouth from the voice. That is the
    decoder's situation under a generator whose mouth lags or rests, which an exact
    ground-truth latent never shows it.
    """

    name = "vae-decoder"

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.frames_per_clip = self.option("frames", 49)
        self.audio_dim = self.option("audio", 0)
        self.audio_lr_scale = self.option("audio_lr_scale", 5.0)
        self.p_smooth = self.option("latent_smooth", 0.0)
        self.smooth_window = self.option("smooth_window", 5)
        self.p_mouth_smooth = self.option("mouth_smooth", 0.0)
        self.p_mouth_shuffle = self.option("mouth_shuffle", 0.0)
        self.mouth_only = bool(self.option("mouth_only", 0))
        self.mouth_outside = self.option("mouth_outside", 0.05)
        self.audio_only = bool(self.option("audio_only", 0))
        self.w_read = self.option("mouth_read", 0.0)
        self.reader = None
        if self.w_read > 0:
            from model_core.train.mouth_reader import LPMMouthReader

            path = self.option("mouth_reader", "")
            if not path or not Path(path).is_file():
                raise ValueError(
                    f"vae-decoder mouth_read needs mouth_reader=PATH of a trained mouth reader "
                    f"(`lpm train mouth-reader`), got {path!r}"
                )
            self.reader = LPMMouthReader.load(path)
        vae = model.vae
        if (
            self.audio_dim < 0
            or not 0 <= self.p_smooth <= 1
            or not 0 <= self.p_mouth_smooth <= 1
            or not 0 <= self.p_mouth_shuffle <= 1 - self.p_mouth_smooth
            or self.smooth_window < 1
            or self.mouth_outside < 0
            or self.w_read < 0
        ):
            raise ValueError(
                "vae-decoder needs audio >= 0, 0 <= latent_smooth <= 1, mouth_smooth and "
                "mouth_shuffle >= 0 with a sum <= 1, "
                "smooth_window >= 1, mouth_outside >= 0 and mouth_read >= 0"
            )
        if self.audio_only and not (self.audio_dim or vae.hears):
            raise ValueError("vae-decoder audio_only needs the audio path: give it audio=WIDTH")
        if self.audio_dim and not vae.hears:
            # New config objects: the one the model was built from may be shared.
            vae.cfg = dataclasses.replace(vae.cfg, decoder_audio=self.audio_dim)
            model.cfg = self.cfg = dataclasses.replace(model.cfg, vae=vae.cfg)
            vae.decoder.enable_audio(self.audio_dim)
        if vae.hears:
            self.data_kind = "frames+audio"

    @property
    def needs_mouth(self) -> bool:
        return (
            super().needs_mouth
            or self.mouth_only
            or self.p_mouth_smooth + self.p_mouth_shuffle > 0
            or self.w_read > 0
        )

    @property
    def needs_mouth_open(self) -> bool:
        return self.w_read > 0

    def trainable_modules(self):
        dec = self.model.vae.decoder
        return [dec.audio, dec.audio_inject] if self.audio_only else [dec]

    def trainable_parameters(self) -> list[dict]:
        dec = self.model.vae.decoder
        if not self.model.vae.hears or self.audio_only:
            return super().trainable_parameters()
        audio = [*dec.audio.parameters(), *dec.audio_inject.parameters()]
        ids = {id(p) for p in audio}
        rest = [p for p in dec.parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": audio, "lr_scale": self.audio_lr_scale}]

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        vae = self.model.vae
        fb = batch if isinstance(batch, FrameBatch) else FrameBatch(batch)
        video, pcm = recolour(fb.video, self.p_recolour), fb.pcm
        mouth = self.mouth_weights(fb.mouth, video.shape[-2:])
        with torch.no_grad():
            z = vae.normalize(vae.encode_posterior(video)[0])
            smoothed = 0
            if self.p_smooth > 0:
                pick = torch.rand(z.shape[0]) < self.p_smooth
                if bool(pick.any()):
                    z = torch.where(
                        pick.view(-1, 1, 1, 1, 1), smooth_latents(z, self.smooth_window), z
                    )
                smoothed = int(pick.sum())
            if self.p_mouth_smooth + self.p_mouth_shuffle > 0:
                z, n = self.unsync_mouth(z, fb)
                smoothed += n
        recon = vae.decode(z, clamp=False, audio=pcm)
        weights = combine_weights(motion_weights(video, self.w_motion), mouth)
        if self.mouth_only:
            # Only the mouth (and a little of the rest, so the voice leaves it alone) counts:
            # the few pixels that carry lip sync are otherwise a rounding error of the loss.
            inside = self.mouth_region(fb.mouth, video.shape[-2:])
            weights = combine_weights(weights, inside + self.mouth_outside)
            l1 = weighted_mean((recon - video).abs(), weights)
            grad = gradient_loss(recon * inside, video * inside)
        else:
            l1 = weighted_mean((recon - video).abs(), weights)
            grad = gradient_loss(recon, video)
        loss = l1 + self.w_grad * grad
        read = None
        if self.reader is not None:
            read = self.mouth_read_loss(recon, fb)
            loss = loss + self.w_read * read
        with torch.no_grad():
            mse = F.mse_loss(recon.clamp(-1, 1), video)
            psnr = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))
            # The second half of the clip is where a short-clip decoder fails.
            half = video.shape[2] // 2
            late = F.mse_loss(recon[:, :, half:].clamp(-1, 1), video[:, :, half:])
            psnr_late = 10 * torch.log10(4.0 / late.clamp_min(1e-10))
            metrics = {
                "l1": l1.item(),
                "grad": grad.item(),
                "psnr": float(psnr),
                "psnr_late": float(psnr_late),
                "smoothed": float(smoothed),
            }
            if read is not None:
                metrics["mouth_read_mse"] = read.item()
            if fb.mouth is not None:  # the L1 inside the mouth region alone
                inside = self.mouth_region(fb.mouth, video.shape[-2:])
                metrics["mouth_l1"] = float(weighted_mean((recon - video).abs(), inside))
        return loss, metrics

    def unsync_mouth(self, z: torch.Tensor, fb: FrameBatch) -> tuple[torch.Tensor, int]:
        """The mouth's latent cells of some clips made useless for lip sync: smoothed along
        time (`mouth_smooth`: a resting mouth) or shuffled in time (`mouth_shuffle`: a moving
        mouth out of step with the voice, as a generator that does not hear draws it). The
        rest of each latent is kept, so the voice is the only way to the right mouth."""
        draw = torch.rand(z.shape[0])
        smooth = draw < self.p_mouth_smooth
        shuffle = ~smooth & (draw < self.p_mouth_smooth + self.p_mouth_shuffle)
        if not bool((smooth | shuffle).any()):
            return z, 0
        cells = latent_mouth_mask(self.mouth_region(fb.mouth, fb.video.shape[-2:]), z.shape[-2:])
        other = smooth_latents(z, self.smooth_window)
        if bool(shuffle.any()) and z.shape[2] > 2:
            order = torch.cat(
                [torch.zeros(1, dtype=torch.long), 1 + torch.randperm(z.shape[2] - 1)]
            )
            other = torch.where(shuffle.view(-1, 1, 1, 1, 1), z[:, :, order], other)
        pick = (smooth | shuffle).view(-1, 1, 1, 1, 1)
        return torch.where(pick & cells, other, z), int((smooth | shuffle).sum())

    def mouth_read_loss(self, recon: torch.Tensor, fb: FrameBatch) -> torch.Tensor:
        """Squared error of the frozen mouth reader's opening of the decoded frames against
        the ground truth's, over the frames that have both a mouth region and an opening."""
        if fb.mouth is None or fb.mouth_open is None:
            raise ValueError("vae-decoder mouth_read needs mouth regions and openings in the data")
        b, c, t, h, w = recon.shape
        frames = recon.transpose(1, 2).reshape(b * t, c, h, w)
        boxes, target = fb.mouth.reshape(b * t, 4), fb.mouth_open.reshape(b * t)
        ok = ~(boxes.isnan().any(dim=1) | target.isnan())
        if not bool(ok.any()):
            return recon.new_zeros(())
        return F.mse_loss(self.reader(frames[ok], boxes[ok]), target[ok].to(recon.dtype))

    def finalize(self, batches, clips: int = 16) -> dict[str, float]:
        return {}  # the latent statistics belong to the frozen encoder


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
