"""The mouth painter: the mouth's opening drawn into the decoded frames.

The mouth head (model_core/mouth_head.py) hears the voice well: its reading of the mouth's
opening follows the footage's at r 0.62 on held-out characters. What it writes into the
latents hardly reaches the frames (the drawn mouth follows what it hears at r 0.01-0.05), and
the VAE's own round trip keeps only half of the footage's lip sync (docs/training.md). The
painter works after the decoder, where the bench and a viewer look: a small convolutional
U-Net over each decoded frame whose only condition is one number, the opening the head heard
for that frame. It learns where a character's mouth is and how that character's mouth looks
open from the frame itself, and how far to open it from the number alone, so it cannot learn
a training character's own mouth movements: the narrow path the head's design note explains.

It sees the head region of a head-and-shoulders frame (the top three quarters, the central
three quarters across: where the performer's framing and the pictures the generators copy
keep the face), folded into 2 x 2 pixel blocks so that its convolutions run at half
resolution while its residual is drawn at full resolution. The residual's last layer starts
at zero, so a model given a painter renders what it did until the painter is trained (`lpm
train mouth-painter`, model_core/train/objectives/mouth_painter.py).
`OnlineConfig.mouth_painter` is its width; 0 (the default) builds none. It needs a mouth
head, whose opening it draws.

With `picture` (`OnlineConfig.mouth_painter_picture`) it also sees the stream's picture, the
global reference as the VAE decodes it, head region beside head region: the Online model
copies the character from that picture in place, and the picture is sharp where the frames
are soft, so it tells the painter where this character's mouth is and what it looks like. A
painter trained without it is given it by `add_picture`, which starts the picture's input
weights at zero (the painter draws what it did until trained on).

With `relative` (`OnlineConfig.mouth_painter_relative`) a frame gets the painter's edit for the
opening told less its edit for opening 0. The painter alone edits a frame told 0 as well, and
on some characters that edit reads as an open mouth: painted relative, "closed" leaves the
frame as the Online model drew it and only the opening is drawn. `strength`
(`OnlineConfig.mouth_painter_strength`) draws the edit that many times over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_core.mouth_head import _FiLMBlock


def head_region(h: int, w: int) -> tuple[slice, slice]:
    """The rows and columns of an (h, w) frame the painter redraws: the top 3/4, the central
    3/4 across, each rounded down to a multiple of 4."""
    rows = (3 * h // 4) // 4 * 4
    cols = (3 * w // 4) // 4 * 4
    left = (w - cols) // 2
    return slice(0, rows), slice(left, left + cols)


class LPMMouthPainter(nn.Module):
    """(frames (N, 3, H, W) in [-1, 1], opening (N,)) -> frames with the mouth opened that
    far (unclamped); only the head region (`head_region`) changes."""

    def __init__(self, width: int = 16, embed: int = 32, picture: bool = False):
        super().__init__()
        if width < 8 or width % 8:
            raise ValueError(f"mouth painter width must be a multiple of 8 (>= 8), got {width}")
        self.width = width
        self.picture = picture
        w1, w2 = width, 2 * width
        self.embed = nn.Sequential(
            nn.Linear(1, embed), nn.SiLU(), nn.Linear(embed, embed), nn.SiLU()
        )
        self.inp = nn.Conv2d(24 if picture else 12, w1, 3, padding=1)  # 2 x 2 blocks of RGB
        self.mid1 = nn.ModuleList(_FiLMBlock(w1, embed) for _ in range(2))
        self.down = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.mid2 = nn.ModuleList(_FiLMBlock(w2, embed) for _ in range(2))
        self.up = nn.Conv2d(w2, w1, 3, padding=1)
        self.mid3 = _FiLMBlock(w1, embed)
        self.out_norm = nn.GroupNorm(8, w1)
        self.out = nn.Conv2d(w1, 12, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def add_picture(self) -> None:
        """Let a painter without the picture see it: the picture's input weights start at 0."""
        if self.picture:
            return
        old = self.inp
        self.inp = nn.Conv2d(24, old.out_channels, 3, padding=1)
        with torch.no_grad():
            self.inp.weight.zero_()
            self.inp.weight[:, :12] = old.weight
            self.inp.bias.copy_(old.bias)
        self.picture = True

    def forward(self, frames: Tensor, opening: Tensor, picture: Tensor | None = None) -> Tensor:
        """`picture` (N or 1, 3, H, W) in [-1, 1]: each frame's (or every frame's) picture,
        needed by a painter that sees one and ignored by one that does not."""
        rows, cols = head_region(*frames.shape[-2:])
        x = F.pixel_unshuffle(frames[:, :, rows, cols], 2)
        if self.picture:
            if picture is None:
                raise ValueError("this mouth painter sees the stream's picture: pass picture=")
            pic = F.pixel_unshuffle(picture.to(frames)[:, :, rows, cols], 2)
            x = torch.cat([x, pic.expand(x.shape[0], -1, -1, -1)], dim=1)
        e = self.embed(opening.to(frames).view(-1, 1))
        h1 = self.inp(x)
        for block in self.mid1:
            h1 = block(h1, e)
        h2 = self.down(F.gelu(h1))
        for block in self.mid2:
            h2 = block(h2, e)
        up = F.interpolate(F.gelu(h2), size=h1.shape[-2:], mode="nearest")
        h = self.mid3(h1 + self.up(up), e)
        delta = F.pixel_shuffle(self.out(F.gelu(self.out_norm(h))), 2)
        pad = (cols.start, frames.shape[-1] - cols.stop, rows.start, frames.shape[-2] - rows.stop)
        return frames + F.pad(delta, pad)

    def paint(
        self,
        video: Tensor,
        opening: Tensor,
        picture: Tensor | None = None,
        relative: bool = False,
        strength: float = 1.0,
    ) -> Tensor:
        """Video (B, 3, T, H, W), the opening per frame (B, T) and, for a painter that sees
        it, the picture (B, 3, H, W) -> painted video, clamped. `relative`: each frame gets
        the painter's edit for its opening less its edit for opening 0 (one pass over both),
        so an opening of 0 leaves a frame exactly as it was. `strength`: the edit is drawn
        that many times over."""
        b, c, t, h, w = video.shape
        frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if picture is not None:
            picture = picture.to(video).repeat_interleave(t, dim=0) if b > 1 else picture
        opening = opening.reshape(b * t).to(frames)
        if relative:  # one pass over the frames told their opening and told 0
            both = self(
                torch.cat([frames, frames]),
                torch.cat([opening, torch.zeros_like(opening)]),
                None if picture is None else picture.expand(b * t, -1, -1, -1).repeat(2, 1, 1, 1),
            )
            edit = both[: b * t] - both[b * t :]
        else:
            edit = self(frames, opening, picture) - frames
        out = frames + strength * edit
        return out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4).clamp(-1.0, 1.0)
