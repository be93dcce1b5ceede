"""Stage `mouth-head`: teach the Online model's mouth head (model_core/mouth_head.py) to draw
the speaking voice into latents whose mouth says nothing of it.

The generators draw an average mouth (docs/training.md): whatever the Refiner hands on, its
mouth cells carry no syllable. The stage makes such latents from the footage: in each window
the mouth cells of every latent frame (the mouth region grown by `grow` cells, since a head
that drew them is near but not exactly where the footage's is) are replaced by their mean
over the window, which keeps the character, the head's place and the mouth's average look and
removes its timing; `noise` (a maximum) adds Gaussian noise of a random strength to the whole
input, as the Online model's latents are rougher than the footage's. With `soft` P, a share P
of the samples starts instead from the footage as the Online model redraws it: each chunk
noised to `soft_t` (default 0.75), denoised by the frozen Backbone in one step with the
footage's previous chunk in its KV cache, then the Refiner's step, as serving runs it. Those
latents are as soft as the Online model's own, but the head sits where the footage's does, so
the footage is still the target. They are made once for every window of the cache when the
stage starts (`prepare`), with a fixed seed, so a resumed run has the same ones. The head, reading the
window's speaking voice and its picture, is scored against the footage: the squared error in
the grown mouth cells, `outside` (default 0.05) x the error elsewhere (it should leave the
rest alone), and `opening` (default 1) x the squared error of its voice embedding's reading
of the opening against the footage's, per video frame.

Both teach the head a mouth at the footage's place, in latents that are the footage's but for
the mouth. The Online model's own latents are not: its character sits near, not on, the
footage's pose, and a head trained on the two inputs above alone heard the voice (its opening
followed the footage's at r 0.59 on held-out bench samples) but drew nothing of it into the
Online model's frames (the drawn mouth against its own opening: r -0.06). Option `online` P
gives a share P of the steps the Online model's own latents of the window (made once when
the stage starts, as serving streams them, `generate_online`), and scores what reaches the
frame: one chunk of the head's output decoded by the frozen VAE and read by the frozen pixel
mouth reader (`mouth_read` W with `mouth_reader=PATH`, needed then) against the footage's
opening, the mouth read where the window's picture has it (the Online model copies the
character from the picture); `anchor` (default 1) x the squared change the head makes outside
that mouth keeps the rest of the frame.

Only the head trains; the voice's features come from the frozen audio encoder the Backbone
hears. A model without a head is given one of `width` (default 64) channels.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from model_core.dit import latent_frame_spans
from model_core.flow import add_noise, predict_x0
from model_core.progress import progress_bar
from model_core.train.data import mouth_cover
from model_core.train.objectives import Objective
from model_core.train.objectives.conditioning import ChunkRollout, LPMConditioner
from model_core.train.objectives.vae import weighted_mean


def neutral_mouth(x0: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Latents (B, z, F, h, w) with the cells under `cells` (B, 1, F, h, w in [0, 1]) blended
    towards each cell's mean over the window's latent frames: the mouth kept, its timing
    gone."""
    mean = x0.mean(dim=2, keepdim=True)
    return x0 * (1 - cells) + mean * cells


def picture_mouth(batch) -> torch.Tensor:
    """(B, F, 4): every latent frame given the mouth region of the latent frame that holds
    the window's picture (its most closed-mouth frame, `picture_frame`'s "rest" rule; the
    first without openings)."""
    b, f = batch.mouth.shape[:2]
    where = torch.zeros(b, dtype=torch.long)
    if batch.mouth_open is not None:
        opening = batch.mouth_open.flatten(1).float()
        known = ~opening.isnan()
        rest = torch.where(known, opening, torch.full_like(opening, float("inf"))).argmin(1)
        where = torch.where(known.any(1), rest // batch.mouth_open.shape[2], where)
    box = batch.mouth[torch.arange(b), where]
    return box[:, None].expand(b, f, 4).contiguous()


class MouthHeadObjective(Objective):
    name = "mouth-head"
    uses_mouth_read = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.width = self.option("width", 64)
        self.outside = self.option("outside", 0.05)
        self.w_opening = self.option("opening", 1.0)
        self.noise = self.option("noise", 0.1)
        self.grow = self.option("grow", 1)
        if self.width < 8 or self.width % 8 or self.outside < 0 or self.w_opening < 0:
            raise ValueError(
                "mouth-head needs width a multiple of 8 (>= 8), outside >= 0 and opening >= 0"
            )
        self.p_soft = self.option("soft", 0.0)
        self.soft_t = self.option("soft_t", 0.75)
        if self.noise < 0 or self.grow < 0:
            raise ValueError("mouth-head needs noise >= 0 and grow >= 0")
        if not 0 <= self.p_soft <= 1 or not 0 < self.soft_t <= 1:
            raise ValueError("mouth-head needs 0 <= soft <= 1 and 0 < soft_t <= 1")
        self.soft_latents: torch.Tensor | None = None
        self.p_online = self.option("online", 0.0)
        self.w_anchor = self.option("anchor", 1.0)
        if not 0 <= self.p_online <= 1 or self.w_anchor < 0:
            raise ValueError("mouth-head needs 0 <= online <= 1 and anchor >= 0")
        if self.p_online > 0 and self.w_mouth_read <= 0:
            raise ValueError(
                "mouth-head online needs mouth_read > 0 and mouth_reader=PATH: the Online "
                "model's latents are scored by the drawn mouth"
            )
        self.online_latents: torch.Tensor | None = None
        if model.mouth_head is None:
            model.enable_mouth_head(self.width)
            self.cfg = model.cfg
        dit = self.cfg.dit
        self.history = max(dit.speak_window[0], dit.listen_window[0])

    @property
    def needs_mouth(self) -> bool:
        return True

    @property
    def needs_picture(self) -> bool:
        return True

    @property
    def needs_mouth_open(self) -> bool:
        return self.w_opening > 0

    def trainable_modules(self):
        return [self.model.mouth_head]

    def prepare(self, cache) -> None:
        super().prepare(cache)
        if self.p_soft > 0 and self.soft_latents is None:
            self.soft_latents = self.redraw(cache)
        if self.p_online > 0 and self.online_latents is None:
            self.online_latents = self.stream_online(cache)

    @torch.no_grad()
    def stream_online(self, cache, batch: int = 8, seed: int = 0) -> torch.Tensor:
        """Every window of `cache` as the Online model streams it (`generate_online`: the
        Backbone's rollout, then the Refiner), (N, z, F, h, w) in float16."""
        from model_core.train.gen_latents import generate_online, online_rollout

        if self.model.base is None:
            raise ValueError("mouth-head online needs the Base model (a checkpoint with it)")
        rollout, out = online_rollout(self.model), []
        bar = progress_bar(len(cache), desc="mouth-head: windows streamed", unit="window")
        with torch.random.fork_rng():
            for s in range(0, len(cache), batch):
                index = list(range(s, min(s + batch, len(cache))))
                latents = generate_online(
                    self.model, cache, index, seed + s, rollout, mouth_head=False
                )
                out.append(latents.half())
                bar.update(len(index))
        bar.close()
        return torch.cat(out)

    @torch.no_grad()
    def redraw(self, cache, batch: int = 8, seed: int = 0) -> torch.Tensor:
        """Every window of `cache` as the Online model redraws the footage (see `soft`),
        (N, z, F, h, w) in float16."""
        # the framed picture as the global reference, as the generators were distilled
        m, cond_of = self.model, LPMConditioner(self.model, 1.0)
        fpc, t = cond_of.fpc, self.soft_t
        from model_core.train.gen_latents import refine_chunks

        out = []
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            bar = progress_bar(len(cache), desc="mouth-head: windows redrawn", unit="window")
            for s in range(0, len(cache), batch):
                b = cache.batch(list(range(s, min(s + batch, len(cache)))))
                cond = cond_of.encode(b, framed=torch.ones(b.size, dtype=torch.bool))
                roll = ChunkRollout(cond_of, m.backbone, cond, self.cfg.online.window_chunks)
                coarse = []
                for c in range(b.x0.shape[2] // fpc):
                    gt = b.x0[:, :, c * fpc : (c + 1) * fpc]
                    tt = torch.full((b.size,), t)
                    xt = add_noise(gt, torch.randn_like(gt), tt)
                    coarse.append(predict_x0(xt, roll.velocity()(xt, t), tt))
                    roll.commit(gt)
                out.append(refine_chunks(m, cond_of, cond, torch.cat(coarse, 2)).half())
                bar.update(b.size)
            bar.close()
        return torch.cat(out)

    def inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the head's input latents, the grown mouth cells, the voice's features, spans)."""
        self._require_mouth(batch.mouth)
        if batch.picture is None:
            raise ValueError("mouth-head needs the windows' pictures in the latent cache")
        x0 = batch.x0
        tf = self.cfg.vae.temporal_factor
        with torch.no_grad():
            cover = mouth_cover(batch.mouth, x0.shape[-2:])
            k = 2 * self.grow + 1
            cells = F.max_pool3d(cover, (1, k, k), stride=1, padding=(0, self.grow, self.grow))
            src = x0
            if self.soft_latents is not None and batch.index is not None:
                soft = self.soft_latents[batch.index].to(x0)
                pick = (torch.rand(x0.shape[0]) < self.p_soft).view(-1, 1, 1, 1, 1)
                src = torch.where(pick, soft, x0)
            x_in = neutral_mouth(src, cells)
            if self.noise > 0:
                sigma = self.noise * torch.rand(x0.shape[0], 1, 1, 1, 1)
                x_in = x_in + sigma * torch.randn_like(x_in)
            frames = x0.shape[2] * tf
            speak = self.model.audio_encoder(batch.speak)[:, -(self.history + frames) :]
        spans = latent_frame_spans(x0.shape[2], self.history, tf)
        return x_in, cells, speak, spans

    def online_step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """One chunk of the Online model's own latents through the head, scored where it
        reaches the frame (see `online`)."""
        self._require_mouth(batch.mouth)
        fpc, tf = self.cfg.latent_frames_per_chunk, self.cfg.vae.temporal_factor
        first = fpc * int(torch.randint(batch.x0.shape[2] // fpc, (1,)))
        frames = slice(first, first + fpc)
        x_in = self.online_latents[batch.index].to(batch.x0)
        with torch.no_grad():
            total = x_in.shape[2] * tf
            speak = self.model.audio_encoder(batch.speak)[:, -(self.history + total) :]
        spans = latent_frame_spans(x_in.shape[2], self.history, tf)[frames]
        x_in = x_in[:, :, frames]
        pred, _ = self.model.mouth_head(x_in, batch.picture, speak, spans)
        mouth = picture_mouth(batch)
        at_picture = dataclasses.replace(batch, mouth=mouth)
        read = self.pixel_read_error(pred, at_picture, frames)
        with torch.no_grad():
            before = self.pixel_read_error(x_in, at_picture, frames)
            cells = mouth_cover(mouth[:, frames], x_in.shape[-2:])
            k = 2 * self.grow + 1
            cells = F.max_pool3d(cells, (1, k, k), stride=1, padding=(0, self.grow, self.grow))
        anchor = weighted_mean((pred - x_in).pow(2), 1 - cells)
        loss = self.w_mouth_read * read + self.w_anchor * anchor
        return loss, {
            "online_read_mse": read.item(),
            "online_input_read_mse": float(before),
            "online_anchor": anchor.item(),
        }

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.online_latents is not None and float(torch.rand(())) < self.p_online:
            return self.online_step(batch)
        x0 = batch.x0
        x_in, cells, speak, spans = self.inputs(batch)
        pred, opening = self.model.mouth_head(x_in, batch.picture, speak, spans)
        w = self.outside + (1 - self.outside) * cells
        mse = weighted_mean((pred - x0).pow(2), cells)
        loss = weighted_mean((pred - x0).pow(2), w)
        with torch.no_grad():
            before = weighted_mean((x_in - x0).pow(2), cells)
        metrics = {"mouth_mse": mse.item(), "input_mouth_mse": float(before)}
        if self.w_opening > 0:
            if batch.mouth_open is None:
                raise ValueError("mouth-head opening needs the footage's mouth openings")
            true = batch.mouth_open.to(opening)
            known = ~true.isnan()
            if known.any():
                err = (opening - torch.nan_to_num(true))[known].pow(2).mean()
                loss = loss + self.w_opening * err
                metrics["opening_mse"] = err.item()
        return loss, metrics
