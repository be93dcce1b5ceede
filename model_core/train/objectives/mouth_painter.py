"""Stage `mouth-painter`: teach the mouth painter (model_core/mouth_painter.py) to open a
decoded frame's mouth as far as it is told.

Each step takes pixel clips of the footage (`frames`, default 1 + 16 frames) and makes from
them what the painter meets in serving, a decoded frame whose mouth says nothing of the
voice: the clip is encoded by the frozen VAE, the latent cells of its mouth (grown by one
cell) are replaced by their mean over the clip's latent frames after the first (the first is
coded alone), Gaussian noise of a random strength up to `noise` is added to the whole latent
(the Online model's latents are rougher than the footage's), and the frozen decoder draws it.
The painter is then given each frame and the footage's opening of that frame, and scored
against the footage: the L1 error in the frame's mouth region (grown by `grow` pixels),
`outside` (default 0.1) x its change elsewhere (it should leave the rest of the frame alone),
and, with `mouth_read` W and `mouth_reader=PATH`, W x the frozen pixel mouth reader's squared
error on its frames against the footage's opening (`lpm train all` trains the reader). The
first frame (coded alone, with its own mouth) and frames whose opening is unknown are left
out of the scores.

In serving the opening comes from the mouth head's reading of the voice; here it is the
footage's, so the painter learns to draw an opening, not to guess one.

The footage's decodes are sharper than what the Online model draws, and its characters sit
where the footage's do. Option `online` P gives a share P of the steps the Online model's own
frames: each clip of the first `online_pool` (default 96) that the stage meets, and after
that one clip every `online_refresh` (default 8) steps in place of the oldest, is streamed
for one second as serving streams it (the clip's first frame as the picture, its voice, the
mouth head on, no painter) and its 24 frames are kept. An online step paints `online_frames`
(default 8) random frames of `batch` pooled clips, each told an opening drawn uniformly from
[0, `online_max`] (default 1.0), and scores the frozen pixel mouth reader's squared error on
the painted frame against that opening, the mouth read where the clip's picture has it (the
Online model copies the character from the picture), plus `outside` x the change elsewhere.
The openings are random, so nothing about a pooled clip tells the painter its answer: it must
draw what it is told. It needs `mouth_read` and the reader.

A painter scored by one frozen reader can learn the reader's blind spots instead of a mouth
(the shipped run 4 did: its painted mouths read 10x nearer the footage's opening than the
input's, while their pixels moved further from the footage's mouth than the input's, and its
frames show stripes and speckle where the mouth box lies). `read_jitter` J reads every
painted frame through a mouth region moved by up to J pixels and rescaled, and `read_soften`
P softens a share P of them first (`perturb_reading` in model_core/train/mouth_reader.py),
so only what survives a different placement and blur, a shape the size of a mouth, scores.
`inside` W (default 0) adds W x the painter's mean change inside the grown mouth region on the
Online steps, where only the reader scores it: of the edits that read as far open, the smallest
costs least, so it pays to draw where the mouth is rather than to darken the whole lower face.
`smooth` W adds W x the mean high-frequency part of the painter's change in the head region
(the change less its 3 x 3 local mean): stripes and checker speckle cost, a soft shape hardly.
`more_readers` (paths separated by commas; `lpm train mouth-reader --seed N` makes them) adds
frozen readers beside `mouth_reader`, and the reader's error is their mean: a texture one
reader misreads as open must fool all of them to pay.

Option `show_picture` (true/false) shows the painter the picture as serving does
(`OnlineConfig.mouth_painter_picture`): the clip's first frame through the frozen VAE, for
footage and pooled Online clips alike; a painter trained without it is given it with its
picture weights at zero.

Option `serve_gain` G records in the checkpoint that serving tells the painter G x the opening
the mouth head hears (`OnlineConfig.mouth_painter_gain`; training always tells it the opening
given). `scripts/painter-gain.py` measures lip sync per gain on validation samples.
Option `serve_relative` (true/false) records that serving paints relative to the painter's own
edit at opening 0 (`OnlineConfig.mouth_painter_relative`), and `serve_strength` S that it draws
the edit S times over (`OnlineConfig.mouth_painter_strength`); training scores the plain painter.

Only the painter trains. A model without one is given one of `width` (default 16) channels; it needs a mouth
head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model_core.mouth_painter import head_region
from model_core.train.data import mouth_cover
from model_core.train.objectives import Objective
from model_core.train.objectives.mouth_head import neutral_mouth
from model_core.train.objectives.vae import weighted_mean
from model_core.train.objectives.vae_decoder import latent_mouth_mask


def high_frequency(change: torch.Tensor) -> torch.Tensor:
    """Mean absolute high-frequency part of a change to frames (N, 3, H, W) over the painter's
    head region: the change less its 3 x 3 local mean."""
    rows, cols = head_region(*change.shape[-2:])
    d = change[:, :, rows, cols]
    return (d - F.avg_pool2d(d, 3, stride=1, padding=1, count_include_pad=False)).abs().mean()


class MouthPainterObjective(Objective):
    name = "mouth-painter"
    uses_mouth_read = True

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.width = self.option("width", 16)
        self.frames_per_clip = self.option("frames", 17)
        self.outside = self.option("outside", 0.1)
        self.noise = self.option("noise", 0.3)
        self.grow = self.option("grow", 3)
        tf = self.cfg.vae.temporal_factor
        if self.frames_per_clip < 1 + tf or (self.frames_per_clip - 1) % tf:
            raise ValueError(
                f"mouth-painter frames must be 1 + a multiple of {tf} (>= {1 + tf}), "
                f"got {self.frames_per_clip}"
            )
        if self.width < 8 or self.width % 8:
            raise ValueError(f"mouth-painter width must be a multiple of 8, got {self.width}")
        if self.outside < 0 or self.noise < 0 or self.grow < 0:
            raise ValueError("mouth-painter needs outside >= 0, noise >= 0 and grow >= 0")
        self.p_online = self.option("online", 0.0)
        self.pool_size = self.option("online_pool", 96)
        self.refresh = self.option("online_refresh", 8)
        self.online_frames = self.option("online_frames", 8)
        self.online_max = self.option("online_max", 1.0)
        if not 0 <= self.p_online <= 1 or self.pool_size < 1 or self.refresh < 1:
            raise ValueError(
                "mouth-painter needs 0 <= online <= 1, online_pool >= 1 and online_refresh >= 1"
            )
        if self.online_frames < 1 or self.online_max <= 0:
            raise ValueError("mouth-painter needs online_frames >= 1 and online_max > 0")
        self.readers = []
        if self.w_mouth_read > 0:
            from model_core.train.mouth_reader import LPMMouthReader

            self.readers = [self.mouth_reader]
            for path in str(self.option("more_readers", "")).split(","):
                if path.strip():
                    try:
                        self.readers.append(LPMMouthReader.load(path.strip()))
                    except Exception as e:  # a missing file, or not a reader's weights
                        raise ValueError(
                            f"mouth-painter more_readers: cannot read {path.strip()}: {e}"
                        ) from e
        elif self.option("more_readers", ""):
            raise ValueError("mouth-painter more_readers needs mouth_read > 0")
        self.read_jitter = self.option("read_jitter", 0.0)
        self.read_soften = self.option("read_soften", 0.0)
        self.smooth = self.option("smooth", 0.0)
        self.inside = self.option("inside", 0.0)
        if self.read_jitter < 0 or not 0 <= self.read_soften <= 1 or self.smooth < 0:
            raise ValueError(
                "mouth-painter needs read_jitter >= 0, 0 <= read_soften <= 1 and smooth >= 0"
            )
        if self.inside < 0:
            raise ValueError("mouth-painter needs inside >= 0")
        if self.p_online > 0 and self.w_mouth_read <= 0:
            raise ValueError(
                "mouth-painter online needs mouth_read > 0 and mouth_reader=PATH: the Online "
                "model's frames are scored by the mouth the reader finds"
            )
        # pooled Online clips: (24 frames (T, 3, H, W) in [-1, 1] as float16, picture's mouth)
        self.pool: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._next = 0  # the pool entry the next refresh replaces
        self._steps = 0
        self._pipe = None
        if model.mouth_head is None:
            raise ValueError(
                "mouth-painter draws the opening the mouth head hears: start from a checkpoint "
                "with a trained mouth head (stage mouth-head)"
            )
        show = self.options.get("show_picture", False)
        if not isinstance(show, bool):
            raise ValueError(f"mouth-painter show_picture must be true or false, got {show!r}")
        if model.mouth_painter is None:
            model.enable_mouth_painter(self.width, show)
            self.cfg = model.cfg
        elif show and not model.mouth_painter.picture:
            model.show_painter_the_picture()
            self.cfg = model.cfg
        self.shows_picture = model.mouth_painter.picture
        serving = {  # option -> the model's setter that records it
            "serve_gain": lambda v: model.set_painter_gain(float(v)),
            "serve_relative": model.set_painter_relative,
            "serve_strength": lambda v: model.set_painter_strength(float(v)),
        }
        for key, record in serving.items():
            if self.options.get(key) is not None:
                try:
                    record(self.options[key])
                except (TypeError, ValueError) as e:
                    raise ValueError(f"mouth-painter {key}: {e}") from e
        self.cfg = model.cfg

    def read_error(self, video, boxes, target) -> torch.Tensor:
        """The mean over the frozen readers of `reader_error`, read through `read_jitter` and
        `read_soften`."""
        from model_core.train.mouth_reader import reader_error

        errors = [
            reader_error(r, video, boxes, target, self.read_jitter, self.read_soften)
            for r in self.readers
        ]
        return torch.stack(errors).mean()

    @property
    def data_kind(self) -> str:  # the Online model's stream hears the clip's voice
        return "frames+audio" if self.p_online > 0 else "frames"

    @property
    def needs_mouth(self) -> bool:
        return True

    @property
    def needs_mouth_open(self) -> bool:
        return True

    def trainable_modules(self):
        return [self.model.mouth_painter]

    @torch.no_grad()
    def inputs(self, video: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
        """Footage clips (B, 3, T, H, W) -> the same clips decoded with the mouth's timing
        taken out of their latents (see the module's docstring)."""
        return self._inputs(video, mouth)[0]

    @torch.no_grad()
    def _inputs(self, video: torch.Tensor, mouth: torch.Tensor):
        """(`inputs`, and the pictures (B, 3, H, W): each clip's first frame as the VAE
        decodes it alone, or None where the painter does not see one)."""
        vae = self.model.vae
        z = vae.encode(video)
        picture = vae.decode(z[:, :, :1])[:, :, 0] if self.shows_picture else None
        cover = mouth_cover(mouth, video.shape[-2:])
        cells = latent_mouth_mask(cover, z.shape[-2:]).float()
        rest = neutral_mouth(z[:, :, 1:], cells)
        z = torch.cat([z[:, :, :1], rest], dim=2)
        if self.noise > 0:
            sigma = self.noise * torch.rand(z.shape[0], 1, 1, 1, 1)
            z = z + sigma * torch.randn_like(z)
        return vae.decode(z), picture

    @torch.no_grad()
    def stream_clip(self, video: torch.Tensor, pcm: torch.Tensor | None, seed: int):
        """One second of the Online model streaming a clip (3, T, H, W): its first frame the
        picture, its voice (PCM, padded with silence before to one second) the speaking
        track, nobody on the other; (24, 3, H, W) frames in [-1, 1], before any painter, and
        the picture (3, H, W) as a painter that sees it is shown it (None otherwise)."""
        from model_core.pipeline import LPMPipeline, ReferenceImages

        if self._pipe is None:
            self._pipe = LPMPipeline(self.model, "mouth-painter")
        sr = self.cfg.audio.sample_rate
        speak = torch.zeros(sr)
        if pcm is not None:
            tail = pcm[-sr:].float()
            speak[sr - len(tail) :] = tail
        picture = ((video[:, 0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
        refs = ReferenceImages(picture.to(torch.uint8).numpy())
        stream = self._pipe.start_stream(refs, seed=seed, mouth_painter=False)
        frames = stream.push(speak.numpy(), torch.zeros(sr).numpy()).frames
        shown = self.model.vae.decode(stream.picture)[0, :, 0] if self.shows_picture else None
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1, shown

    def refresh_pool(self, batch) -> None:
        """Stream the batch's clips into the pool while it fills, then one clip every
        `online_refresh` steps in place of the oldest."""
        self._steps += 1
        full = len(self.pool) >= self.pool_size
        if full and self._steps % self.refresh:
            return
        for i in range(1 if full else batch.video.shape[0]):
            pcm = batch.pcm[i] if batch.pcm is not None else None
            frames, shown = self.stream_clip(batch.video[i], pcm, seed=self._steps * 31 + i)
            entry = (frames.half(), batch.mouth[i, 0].clone(), shown)
            if len(self.pool) < self.pool_size:
                self.pool.append(entry)
            else:
                self.pool[self._next] = entry
                self._next = (self._next + 1) % self.pool_size

    def online_step(self, b: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Random frames of pooled Online clips painted to random openings (see `online`)."""
        from model_core.train.mouth_reader import reader_error

        picks = torch.randint(len(self.pool), (b,)).tolist()
        frames, boxes, shown = [], [], []
        for p in picks:
            clip, box, pic = self.pool[p]
            idx = torch.randperm(clip.shape[0])[: self.online_frames]
            frames.append(clip[idx].float())
            boxes.append(box.expand(len(idx), 4))
            if pic is not None:
                shown.append(pic[None].expand(len(idx), -1, -1, -1))
        x_in, boxes = torch.cat(frames), torch.cat(boxes)
        target = self.online_max * torch.rand(x_in.shape[0])
        painted = self.model.mouth_painter(x_in, target, torch.cat(shown) if shown else None)
        video = painted.permute(1, 0, 2, 3)[None]  # (1, 3, N, H, W): one clip of N frames
        read = self.read_error(video, boxes[None], target[None])
        with torch.no_grad():
            before = reader_error(
                self.mouth_reader, x_in.permute(1, 0, 2, 3)[None], boxes[None], target[None]
            )
            region = mouth_cover(boxes[:, None], x_in.shape[-2:])[:, 0]  # (N, 1, H, W)
            k = 2 * self.grow + 1
            region = F.max_pool2d(region, k, stride=1, padding=self.grow)
        change = weighted_mean((painted - x_in).abs(), 1 - region)
        within = weighted_mean((painted - x_in).abs(), region)
        rough = high_frequency(painted - x_in)
        loss = (
            self.w_mouth_read * read
            + self.outside * change
            + self.inside * within
            + self.smooth * rough
        )
        return loss, {
            "online_read_mse": read.item(),
            "online_input_read_mse": float(before),
            "online_change": change.item(),
            "online_inside_change": within.item(),
            "online_rough": rough.item(),
        }

    def step(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.p_online > 0:
            self.refresh_pool(batch)
            if float(torch.rand(())) < self.p_online:
                return self.online_step(batch.video.shape[0])
        video, mouth, opening = batch.video, batch.mouth, batch.mouth_open
        self._require_mouth(mouth)
        if opening is None:
            raise ValueError("mouth-painter needs the footage's mouth openings")
        x_in, picture = self._inputs(video, mouth)
        x_in = x_in[:, :, 1:]
        video, mouth, opening = video[:, :, 1:], mouth[:, 1:], opening[:, 1:]
        known = ~opening.isnan()
        b, c, t, h, w = video.shape
        frames = x_in.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if picture is not None:
            picture = picture.repeat_interleave(t, dim=0)
        painted = self.model.mouth_painter(frames, torch.nan_to_num(opening).reshape(-1), picture)
        painted = painted.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        with torch.no_grad():
            region = mouth_cover(mouth, (h, w))
            k = 2 * self.grow + 1
            region = F.max_pool3d(region, (1, k, k), stride=1, padding=(0, self.grow, self.grow))
            use = known[:, None, :, None, None].float()
        err = (painted - video).abs()
        mouth_l1 = weighted_mean(err, region * use)
        change = weighted_mean((painted - x_in).abs(), (1 - region) * use)
        rough = high_frequency((painted - x_in).transpose(1, 2).reshape(b * t, c, h, w))
        loss = mouth_l1 + self.outside * change + self.smooth * rough
        with torch.no_grad():
            before = weighted_mean((x_in - video).abs(), region * use)
        metrics = {
            "mouth_l1": mouth_l1.item(),
            "input_mouth_l1": float(before),
            "outside_change": change.item(),
            "rough": rough.item(),
        }
        if self.w_mouth_read > 0:
            from model_core.train.mouth_reader import reader_error

            read = self.read_error(painted, mouth, opening)
            with torch.no_grad():
                read_before = reader_error(self.mouth_reader, x_in, mouth, opening)
            loss = loss + self.w_mouth_read * read
            metrics |= {"read_mse": read.item(), "input_read_mse": float(read_before)}
        return loss, metrics
