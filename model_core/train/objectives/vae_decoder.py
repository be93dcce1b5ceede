"""Last stage, `vae-decoder`: the VAE's decoder alone, on long clips, optionally hearing.

The decoder is fitted with the encoder frozen, so every latent the DiT stages learned keeps
its meaning; `DecoderObjective` has the stage's whole story. Its mouth options make the
voice, not the latent, the way to the right mouth: `smooth_latents` and `latent_mouth_mask`
take the mouth's movement out of a clip's latents, and a frozen mouth reader
(`model_core/train/mouth_reader.py`) scores the opening of the decoded mouth.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from model_core.train.data import FrameBatch
from model_core.train.objectives.vae import (
    VAEObjective,
    combine_weights,
    gradient_loss,
    motion_weights,
    recolour,
    weighted_mean,
)


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
    uses_mouth_read = True  # its own term: the footage's latents decoded (`mouth_read_loss`)

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
        self.gen_path = self.option("gen_latents", "")
        self.w_gen_read = self.option("gen_read", self.w_read)
        self.w_gen_anchor = self.option("gen_anchor", 1.0)
        self.gen_batch = self.option("gen_batch", 2)
        self.reader = None
        if self.w_read > 0 or self.gen_path:
            self.reader = self.mouth_reader or self.load_mouth_reader(
                "mouth_read" if self.w_read > 0 else "gen_latents"
            )
        self.gen = self.gen_anchor = None
        if self.gen_path:
            self._load_gen_latents(model)
        vae = model.vae
        if (
            self.audio_dim < 0
            or not 0 <= self.p_smooth <= 1
            or not 0 <= self.p_mouth_smooth <= 1
            or not 0 <= self.p_mouth_shuffle <= 1 - self.p_mouth_smooth
            or self.smooth_window < 1
            or self.mouth_outside < 0
            or self.w_read < 0
            or self.w_gen_read < 0
            or self.w_gen_anchor < 0
            or self.gen_batch < 1
        ):
            raise ValueError(
                "vae-decoder needs audio >= 0, 0 <= latent_smooth <= 1, mouth_smooth and "
                "mouth_shuffle >= 0 with a sum <= 1, "
                "smooth_window >= 1, mouth_outside >= 0, mouth_read, gen_read and gen_anchor "
                ">= 0 and gen_batch >= 1"
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
        # Each frame's mouth region on the pixel grid, once: the mouth options all read it.
        inside = None
        if fb.mouth is not None or self.needs_mouth:
            inside = self.mouth_region(fb.mouth, video.shape[-2:])
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
                z, n = self.unsync_mouth(z, inside)
                smoothed += n
        recon = vae.decode(z, clamp=False, audio=pcm)
        weights = combine_weights(motion_weights(video, self.w_motion), mouth)
        if self.mouth_only:
            # Only the mouth (and a little of the rest, so the voice leaves it alone) counts:
            # the few pixels that carry lip sync are otherwise a rounding error of the loss.
            weights = combine_weights(weights, inside + self.mouth_outside)
            l1 = weighted_mean((recon - video).abs(), weights)
            grad = gradient_loss(recon * inside, video * inside)
        else:
            l1 = weighted_mean((recon - video).abs(), weights)
            grad = gradient_loss(recon, video)
        loss = l1 + self.w_grad * grad
        read = None
        if self.reader is not None and self.w_read > 0:
            read = self.mouth_read_loss(recon, fb)
            loss = loss + self.w_read * read
        gen_metrics = {}
        if self.gen is not None:
            gen_loss, gen_metrics = self.generated_loss()
            loss = loss + gen_loss
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
            metrics |= gen_metrics
            if inside is not None:  # the L1 inside the mouth region alone
                metrics["mouth_l1"] = float(weighted_mean((recon - video).abs(), inside))
        return loss, metrics

    def unsync_mouth(self, z: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, int]:
        """`inside`: the batch's pixel mouth coverage (`mouth_region`). The mouth's latent cells of some clips made useless for lip sync: smoothed along
        time (`mouth_smooth`: a resting mouth) or shuffled in time (`mouth_shuffle`: a moving
        mouth out of step with the voice, as a generator that does not hear draws it). The
        rest of each latent is kept, so the voice is the only way to the right mouth."""
        draw = torch.rand(z.shape[0])
        smooth = draw < self.p_mouth_smooth
        shuffle = ~smooth & (draw < self.p_mouth_smooth + self.p_mouth_shuffle)
        if not bool((smooth | shuffle).any()):
            return z, 0
        cells = latent_mouth_mask(inside, z.shape[-2:])
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
        return self.reader_error(recon, fb.mouth, fb.mouth_open)

    def reader_error(self, recon: torch.Tensor, boxes: torch.Tensor, target: torch.Tensor):
        """The reader's squared error on decoded frames (`mouth_reader.reader_error`)."""
        from model_core.train.mouth_reader import reader_error

        return reader_error(self.reader, recon, boxes, target)

    # -- the Online model's own latents (`gen_latents`) -------------------------------------------
    def _load_gen_latents(self, model) -> None:
        """`gen_latents=PATH` (`lpm train online-latents`): besides the footage, each step
        decodes `gen_batch` windows of a generator's latents, which have no pixel target. The
        mouth reader's opening of the decoded mouth is regressed onto the footage's opening
        (`gen_read`, default `mouth_read`), and outside the mouth the frames are held to what
        the decoder drew from them before this stage (`gen_anchor`, L1 to a frozen copy), so
        that only the mouth learns from them."""
        import copy

        from model_core.train.gen_latents import OnlineLatents
        from model_core.train.loop import encoder_digest

        self.gen = OnlineLatents.load(self.gen_path)
        if self.gen.encoder_version != encoder_digest(model.vae):
            raise ValueError(
                f"gen_latents {self.gen_path}: made with another VAE encoder "
                f"({self.gen.checkpoint}), so its latents are in another latent space"
            )
        self.gen_anchor = copy.deepcopy(model.vae).eval().requires_grad_(False)

    def generated_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        from model_core.train.data import frame_mouth_boxes, mouth_cover

        vae, gen = self.model.vae, self.gen
        index = torch.randint(len(gen), (self.gen_batch,)).tolist()
        z, mouth, opening = gen.batch(index)
        boxes = frame_mouth_boxes(mouth, self.cfg.vae.temporal_factor, self.cfg.vae.spatial_factor)
        recon = vae.decode(z, clamp=False)[:, :, 1:]
        with torch.no_grad():
            before = self.gen_anchor.decode(z, clamp=False)[:, :, 1:]
        read = self.reader_error(recon, boxes, opening.flatten(1))
        outside = 1.0 - mouth_cover(boxes, recon.shape[-2:]).clamp(0, 1)
        anchor = weighted_mean((recon - before).abs(), outside)
        loss = self.w_gen_read * read + self.w_gen_anchor * anchor
        return loss, {"gen_read_mse": read.item(), "gen_anchor_l1": anchor.item()}

    def state_dict(self) -> dict:
        # The mouth reader is frozen and read from its file; the anchor is the decoder this
        # stage started from, kept so that a resumed run holds to the same one.
        return {"gen_anchor": self.gen_anchor.state_dict()} if self.gen_anchor is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.gen_anchor is not None and "gen_anchor" in state:
            self.gen_anchor.load_state_dict(state["gen_anchor"])

    def finalize(self, batches, clips: int = 16) -> dict[str, float]:
        return {}  # the latent statistics belong to the frozen encoder
