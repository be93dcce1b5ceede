"""The mouth head: the speaking voice drawn into the Online model's latents.

Every way of teaching the distilled generators to move the mouth with the voice measured in
docs/training.md moved the mean opening, not its timing: the Online model's latents decode to
a mouth that follows no syllable, although a linear readout of the audio features the
transformer is given follows the footage's opening at r 0.56, and the decoder draws a mouth
from latents as soft as the Backbone's when their mouth is the footage's. The mouth head is the
short path between the two: a small convolutional network over each latent frame that reads
that frame's speaking-voice features and adds a residual to the latent, so that what the
generators leave as an average mouth is opened and closed in time with the voice.

Per latent frame it sees the frame's latent, the picture's latent (the global reference: the
character's colours and resting mouth) and the speaking track's features over the frame's four
video frames and `HISTORY` before them (causal: nothing after the frame, as a stream has it).
The features are layer-normalised (the trained audio encoder's output can be small) and read by
an MLP into the mouth's opening at each of the latent frame's video frames and `voice` more
numbers; only those modulate the convolutions (FiLM). The training stage scores the opening
against the footage's. The narrow path is what lets the head work on characters it has not
seen: a wide embedding of the voice also carries who is speaking, and a head trained through
one (128 numbers) learned each training character's own mouths (decoded r 0.41 of the
footage's opening on training windows, 0.13 on held-out ones). The residual's last layer starts at zero: a model given a head computes exactly what
it did until the head is trained (`lpm train mouth-head`, `model_core/train/objectives/
mouth_head.py`). `OnlineConfig.mouth_head` is its width; 0 (the default) builds none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HISTORY = 2  # video frames of voice before a latent frame's own four


class _FiLMBlock(nn.Module):
    def __init__(self, width: int, embed: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.film = nn.Linear(embed, 2 * width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        y = self.conv1(F.gelu(self.norm(h)))
        y = F.gelu(y * (1 + scale) + shift)
        return h + self.conv2(y)


class LPMMouthHead(nn.Module):
    """(latents (B, z, F, h, w), picture (B, z, 1, h, w), speaking features (B, Ta, D), spans
    (F, 2) first/last video frame of each latent frame in the features) -> latents plus the
    voice's residual, and the opening read from the voice (B, F, frames per latent frame)."""

    def __init__(
        self,
        z_dim: int,
        audio_dim: int,
        width: int = 64,
        frames_per_latent: int = 4,
        blocks: int = 4,
        embed: int = 128,
        voice: int = 4,
    ):
        super().__init__()
        self.z_dim, self.audio_dim, self.width = z_dim, audio_dim, width
        self.frames_per_latent = frames_per_latent
        taps = frames_per_latent + HISTORY
        self.audio = nn.Sequential(
            nn.Linear(taps * audio_dim, 2 * embed),
            nn.GELU(),
            nn.Linear(2 * embed, embed),
            nn.GELU(),
            nn.Linear(embed, frames_per_latent + voice),
        )
        self.inp = nn.Conv2d(2 * z_dim, width, 3, padding=1)
        cond = frames_per_latent + voice
        self.blocks = nn.ModuleList(_FiLMBlock(width, cond) for _ in range(blocks))
        self.out_norm = nn.GroupNorm(8, width)
        self.out = nn.Conv2d(width, z_dim, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def voice(self, speak: Tensor, spans: Tensor) -> Tensor:
        """(B, Ta, D) features, (F, 2) spans -> (B, F, taps * D): each latent frame's own
        frames and HISTORY before them (clamped at the track's start), normalised per frame."""
        taps = self.frames_per_latent + HISTORY
        last = spans[:, 1].to(speak.device)
        idx = last[:, None] - torch.arange(taps - 1, -1, -1, device=speak.device)[None]
        idx = idx.clamp(0, speak.shape[1] - 1)  # (F, taps)
        feats = F.layer_norm(speak, speak.shape[-1:])[:, idx]  # (B, F, taps, D)
        return feats.flatten(2)

    def opening(self, speak: Tensor, spans: Tensor) -> Tensor:
        """The mouth's opening heard in the voice alone, (B, F, frames per latent frame): what
        the mouth painter (model_core/mouth_painter.py) draws."""
        return self.audio(self.voice(speak, spans))[..., : self.frames_per_latent]

    def forward(
        self, z: Tensor, picture: Tensor, speak: Tensor, spans: Tensor
    ) -> tuple[Tensor, Tensor]:
        b, c, f, h, w = z.shape
        e = self.audio(self.voice(speak, spans).to(z))  # (B, F, frames + voice)
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        pic = picture.to(z).expand(b, c, f, h, w).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        ef = e.reshape(b * f, -1)
        x = self.inp(torch.cat([frames, pic], 1))
        for block in self.blocks:
            x = block(x, ef)
        delta = self.out(F.gelu(self.out_norm(x)))
        delta = delta.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
        return z + delta, e[..., : self.frames_per_latent]
