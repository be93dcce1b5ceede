"""What every DiT objective shares: turning a batch into the transformer's conditions, the
block-causal chunk rollout through the real KV cache, and the few-step sampler of the Online
Backbone (the same arithmetic as `OnlineStream.backbone`, but able to carry gradients)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from model_core.dit import LPMAudioInputs, LPMSink, LPMTransformer, latent_frame_spans
from model_core.flow import guide, predict_x0, shift_timesteps
from model_core.kv_cache import SinkWindowKVCache
from model_core.references import EncodedReferences
from model_core.train.data import AUDIO_CONTEXT_SECONDS, LatentBatch

Velocity = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass
class Conditioning:
    """Text, both audio tracks and references of a batch; None means dropped."""

    context: torch.Tensor
    context_mask: torch.Tensor | None
    speak: torch.Tensor | None  # (B, history + T, D) per-video-frame features
    listen: torch.Tensor | None
    refs: EncodedReferences
    history: int  # audio frames before the clip's first frame
    # (B,) bool: which samples' global reference is the window's framed picture (None: no
    # `framed_global`); kept so that the same conditions can be encoded again
    framed: torch.Tensor | None = None


class LPMConditioner:
    """`framed`: the probability, per sample, that the global reference is the window's own
    first frame (`LatentBatch.picture`) instead of the identity's studio portrait: a picture
    framed like the footage, which is what a user hands an image-to-video model, and what a
    `ref_concat` transformer can copy cell by cell."""

    def __init__(self, model, framed: float = 0.0):
        self.model, self.cfg, self.framed = model, model.cfg, framed
        dit = self.cfg.dit
        self.history = max(dit.speak_window[0], dit.listen_window[0])
        self.fpc = self.cfg.latent_frames_per_chunk

    def encode(
        self,
        batch: LatentBatch,
        *,
        text: bool = True,
        audio: bool = True,
        only_global: bool = False,
        framed: torch.Tensor | None = None,
    ) -> Conditioning:
        """Gradients flow into the text and audio encoders when grad mode is on. `framed`
        (B,) fixes which samples get the framed picture (a `Conditioning.framed` of an earlier
        encoding); otherwise each does with the conditioner's probability."""
        m, b = self.model, batch.size
        if text and any(batch.captions):
            out = m.text_encoder.encode(batch.captions)
            ctx, mask = out[0], out[1]
        else:
            ctx, mask = m.text_encoder.null_context(b), None
        speak = listen = None
        if audio:
            frames = batch.x0.shape[2] * self.cfg.vae.temporal_factor
            keep = self.history + frames
            speak = m.audio_encoder(batch.speak)[:, -keep:]
            listen = m.audio_encoder(batch.listen)[:, -keep:]
        refs = batch.refs.only_global() if only_global else batch.refs
        if framed is None and self.framed > 0:
            framed = torch.rand(b) < self.framed
        if framed is not None:
            refs = framed_references(refs, batch.picture, self.framed, swap=framed)
        return Conditioning(ctx, mask, speak, listen, refs, self.history, framed)

    def unconditional(self, cond: Conditioning) -> Conditioning:
        """Classifier-free guidance's other branch, as `render_base` evaluates it."""
        b = cond.context.shape[0]
        return Conditioning(
            self.model.text_encoder.null_context(b),
            None,
            None,
            None,
            cond.refs,
            cond.history,
            cond.framed,
        )

    def audio_inputs(self, cond: Conditioning, first: int, count: int) -> LPMAudioInputs | None:
        if cond.speak is None:
            return None
        total = (cond.speak.shape[1] - cond.history) // self.cfg.vae.temporal_factor
        spans = latent_frame_spans(total, cond.history, self.cfg.vae.temporal_factor)
        return LPMAudioInputs(cond.speak, cond.listen, spans[first : first + count])

    def sink(self, net: LPMTransformer, cond: Conditioning) -> LPMSink:
        return net.encode_sink(cond.refs.layout(self.cfg))

    def forward_kwargs(
        self,
        net: LPMTransformer,
        cond: Conditioning,
        frames: int,
        first: int = 0,
        sink: LPMSink | None = None,
    ) -> dict:
        """Keyword arguments of a whole-sequence forward over latent frames [first, first+frames)."""
        return dict(
            sink=sink if sink is not None else self.sink(net, cond),
            frame_pos=torch.arange(frames) + self.cfg.refs.video_rope_offset,
            context=cond.context,
            context_mask=cond.context_mask,
            audio=self.audio_inputs(cond, first, frames),
        )


def framed_references(
    refs: EncodedReferences,
    picture: torch.Tensor | None,
    p: float,
    swap: torch.Tensor | None = None,
) -> EncodedReferences:
    """`refs` with each sample's global latent swapped, with probability `p` (or where the
    (B,) bool `swap` says), for its window's framed picture."""
    if picture is None:
        raise ValueError(
            "the framed_global option needs the windows' first frames; this latent cache was "
            "built before they were kept (delete it to rebuild)"
        )
    g = refs.global_latent
    if swap is None:
        swap = torch.rand(g.shape[0]) < p
    swap = swap.view(-1, 1, 1, 1, 1)
    return dataclasses.replace(refs, global_latent=torch.where(swap, picture.to(g), g))


def crop_chunks(
    batch: LatentBatch,
    first: int,
    chunks: int,
    fpc: int,
    sample_rate: int,
) -> LatentBatch:
    """A chunk-aligned sub-window of a batch: latents and the audio with its left context."""
    a = first * sample_rate
    n = (AUDIO_CONTEXT_SECONDS + chunks) * sample_rate
    return LatentBatch(
        batch.x0[:, :, first * fpc : (first + chunks) * fpc],
        batch.speak[:, a : a + n],
        batch.listen[:, a : a + n],
        batch.captions,
        batch.refs,
        batch.identities,
        batch.ref_images,
        None if batch.mouth is None else batch.mouth[:, first * fpc : (first + chunks) * fpc],
        batch.picture,
        None
        if batch.mouth_open is None
        else batch.mouth_open[:, first * fpc : (first + chunks) * fpc],
    )


def random_crop(
    batch: LatentBatch,
    chunks: int,
    fpc: int,
    sample_rate: int,
    generator: torch.Generator | None = None,
) -> LatentBatch:
    total = batch.x0.shape[2] // fpc
    if chunks >= total:
        return batch
    first = int(torch.randint(total - chunks + 1, (1,), generator=generator))
    return crop_chunks(batch, first, chunks, fpc, sample_rate)


def block_causal_mask(chunks: int, fpc: int, window: int | None) -> torch.Tensor:
    """(F, F) frame mask: a chunk sees itself and up to `window` earlier chunks."""
    c = torch.arange(chunks * fpc) // fpc
    m = c[:, None] >= c[None, :]
    if window is not None:
        m &= (c[:, None] - c[None, :]) <= window
    return m


def guided_velocity(
    net: LPMTransformer,
    x: torch.Tensor,
    t: torch.Tensor,
    cond_kw: dict,
    uncond_kw: dict | None,
    scale: float,
    audio_scale: float = 0.0,
) -> torch.Tensor:
    """Velocity with classifier-free guidance; t is (B,) and applies to every frame.
    `audio_scale` adds guidance on the audio alone, as `render_base` does
    (`guide` in model_core/flow.py)."""
    tt = t[:, None].expand(-1, x.shape[2])
    v = net(x, tt, **cond_kw)
    guided = uncond_kw is not None and scale != 1.0
    heard = audio_scale != 0.0 and cond_kw.get("audio") is not None
    if not guided and not heard:
        return v
    v_u = net(x, tt, **uncond_kw) if guided else None
    v_na = net(x, tt, **{**cond_kw, "audio": None}) if heard else None
    return guide(v, v_u, scale, v_na, audio_scale)


def ode_solve(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    steps: int,
    shift: float,
    record: tuple[float, ...],
) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Euler from t=1 to 0 on the shifted grid of `sample_euler_cfg`, refined so that it also
    lands on each time in `record`; returns x0 and the states at those times."""
    grid = shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift).tolist()
    ts = sorted(set(grid) | {float(r) for r in record}, reverse=True)
    x, states = noise, {}
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        if any(abs(t - r) < 1e-9 for r in record):
            states[min(record, key=lambda r: abs(r - t))] = x
        v = velocity(x, torch.full((x.shape[0],), t))
        x = x + (t_next - t) * v
    return x, states


def few_step_sample(
    velocity: Velocity,
    noise: torch.Tensor,
    timesteps: tuple[float, ...],
    grad_at: int | None = None,
) -> torch.Tensor:
    """The Backbone's sampler: predict x0, re-noise to the next time with fresh noise.

    Only step `grad_at` carries gradients (and sampling stops there: the random-exit trick
    of DMD training); with grad_at=None every step runs without gradients.
    """
    x = noise
    for i, t in enumerate(timesteps):
        exit_here = grad_at == i
        with torch.set_grad_enabled(exit_here and torch.is_grad_enabled()):
            x0 = predict_x0(x, velocity(x, float(t)), torch.full((x.shape[0],), float(t)))
        if exit_here or i + 1 == len(timesteps):
            return x0
        tn = float(timesteps[i + 1])
        x = (1 - tn) * x0.detach() + tn * torch.randn_like(x0)
    return x


class ChunkRollout:
    """Chunk-by-chunk generation through the Online model's sink + sliding-window KV cache,
    exactly as `OnlineStream.backbone` streams, with gradients allowed through the current
    chunk (earlier chunks enter only as cached, detached keys and values).

    `context_noise` > 0 corrupts each committed chunk towards noise by a random amount in
    [0, context_noise] (still entered at t = 0, as if clean): the network learns that the
    window is an unreliable copy of the past and to take the character's appearance from the
    attention sink, which is what keeps a long stream from drifting on its own errors."""

    def __init__(
        self,
        conditioner: LPMConditioner,
        net: LPMTransformer,
        cond: Conditioning,
        window: int | None,
        context_noise: float = 0.0,
    ):
        cfg = conditioner.cfg
        self.context_noise = context_noise
        self.c, self.net, self.cond = conditioner, net, cond
        self.fpc = cfg.latent_frames_per_chunk
        h, w = cfg.latent_hw
        ph, pw = cfg.dit.patch_size[1:]
        with torch.no_grad():
            sink = conditioner.sink(net, cond)
        self.cache = SinkWindowKVCache(
            sink, window, self.fpc, (h // ph, w // pw), cfg.refs.video_rope_offset
        )
        self.index = 0

    def _kwargs(self) -> dict:
        return dict(
            sink=self.cache.sink,
            frame_pos=self.cache.current_frame_pos(),
            context=self.cond.context,
            context_mask=self.cond.context_mask,
            audio=self.c.audio_inputs(self.cond, self.index * self.fpc, self.fpc),
            prefix=self.cache.prefix(self.net.rope.tables),
        )

    def velocity(self) -> Velocity:
        kw = self._kwargs()

        def v(x: torch.Tensor, t: float) -> torch.Tensor:
            return self.net(x, torch.full((x.shape[0], self.fpc), t), **kw)

        return v

    @torch.no_grad()
    def commit(self, x0: torch.Tensor) -> None:
        """Refill the cache from a clean chunk (the model's output, or ground truth when
        teacher forcing) and move on to the next chunk."""
        if self.context_noise > 0:
            s = self.context_noise * torch.rand(x0.shape[0], 1, 1, 1, 1)
            x0 = (1 - s) * x0 + s * torch.randn_like(x0)
        _, kvs = self.net(
            x0.detach(), torch.zeros(x0.shape[0], self.fpc), return_kv=True, **self._kwargs()
        )
        self.cache.append(kvs)
        self.index += 1
