"""LPMModel: every module of the LPM system in one place, and its parameter accounting."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from model_core.audio import LPMAudioEncoder
from model_core.config import LPMConfig
from model_core.dit import LPMTransformer
from model_core.mouth_head import LPMMouthHead
from model_core.mouth_painter import LPMMouthPainter
from model_core.text import LPMTextEncoder
from model_core.vae import LPMCausalVAE

AUDIO_PARAM_MARKERS = (".audio_attn.", ".norm_audio.")


class LPMModel(nn.Module):
    """VAE, audio and text encoders, the Base transformer (bidirectional teacher), and the
    Online model's Backbone and Refiner (each its own weights)."""

    def __init__(self, cfg: LPMConfig, with_base: bool = True):
        super().__init__()
        self.cfg = cfg
        self.vae = LPMCausalVAE(
            cfg.vae, cfg.audio.sample_rate, cfg.audio.sample_rate / cfg.video.fps
        )
        self.audio_encoder = LPMAudioEncoder(cfg.audio)
        # The 17B preset's umT5-XXL text encoder is a frozen external model: not built here.
        self.text_encoder = LPMTextEncoder(cfg.text) if cfg.text.backend != "umt5" else None
        kw = dict(
            z_dim=cfg.vae.z_dim,
            text_dim=cfg.text.dim,
            audio_dim=cfg.audio.feature_dim,
            video_rope_offset=cfg.refs.video_rope_offset,
        )
        self.base = LPMTransformer(cfg.dit, **kw) if with_base else None
        self.backbone = LPMTransformer(cfg.dit, **kw)
        self.refiner = LPMTransformer(cfg.dit, num_layers=cfg.online.refiner_layers, **kw)
        self.mouth_head: LPMMouthHead | None = None
        if cfg.online.mouth_head > 0:
            self.enable_mouth_head(cfg.online.mouth_head)
        self.mouth_painter: LPMMouthPainter | None = None
        if cfg.online.mouth_painter > 0:
            self.enable_mouth_painter(cfg.online.mouth_painter, cfg.online.mouth_painter_picture)

    def enable_mouth_head(self, width: int) -> None:
        """Give the Online model a mouth head of this width (model_core/mouth_head.py),
        recorded in new config objects; its residual starts at zero, so the model computes
        what it did until the head is trained."""
        cfg = self.cfg
        online = dataclasses.replace(cfg.online, mouth_head=int(width))
        self.cfg = dataclasses.replace(cfg, online=online)
        self.mouth_head = LPMMouthHead(
            cfg.vae.z_dim, cfg.audio.feature_dim, int(width), cfg.vae.temporal_factor
        )

    def enable_mouth_painter(self, width: int, picture: bool = False) -> None:
        """Give the Online model a mouth painter of this width (model_core/mouth_painter.py),
        recorded in new config objects; it draws the opening the mouth head hears, so the model
        must have a head. Its residual starts at zero, as the head's does. `picture`: it also
        sees the stream's picture."""
        if self.mouth_head is None:
            raise ValueError("a mouth painter draws what the mouth head hears: add a head first")
        online = dataclasses.replace(
            self.cfg.online, mouth_painter=int(width), mouth_painter_picture=bool(picture)
        )
        self.cfg = dataclasses.replace(self.cfg, online=online)
        self.mouth_painter = LPMMouthPainter(int(width), picture=bool(picture))

    def show_painter_the_picture(self) -> None:
        """Let this model's mouth painter see the stream's picture (`add_picture`), recorded
        in new config objects."""
        if self.mouth_painter is None:
            raise ValueError("this model has no mouth painter")
        self.mouth_painter.add_picture()
        online = dataclasses.replace(self.cfg.online, mouth_painter_picture=True)
        self.cfg = dataclasses.replace(self.cfg, online=online)

    def _set_painter_serving(self, **online_fields) -> None:
        """Record mouth-painter serving settings in new config objects."""
        if self.mouth_painter is None:
            raise ValueError("this model has no mouth painter")
        online = dataclasses.replace(self.cfg.online, **online_fields)
        self.cfg = dataclasses.replace(self.cfg, online=online)

    def set_painter_gain(self, gain: float) -> None:
        """Tell this model's mouth painter `gain` x the opening the mouth head hears
        (`OnlineConfig.mouth_painter_gain`)."""
        if self.mouth_painter is not None and not gain > 0:
            raise ValueError(f"mouth painter gain must be > 0, got {gain!r}")
        self._set_painter_serving(mouth_painter_gain=float(gain))

    def set_painter_relative(self, on: bool = True) -> None:
        """Paint relative to the painter's edit at opening 0 (`OnlineConfig.
        mouth_painter_relative`), or not."""
        if self.mouth_painter is not None and not isinstance(on, bool):
            raise ValueError(f"mouth painter relative must be true or false, got {on!r}")
        self._set_painter_serving(mouth_painter_relative=on)

    def set_painter_strength(self, strength: float) -> None:
        """Draw this model's mouth painter's edit `strength` times over
        (`OnlineConfig.mouth_painter_strength`)."""
        if self.mouth_painter is not None and not strength > 0:
            raise ValueError(f"mouth painter strength must be > 0, got {strength!r}")
        self._set_painter_serving(mouth_painter_strength=float(strength))

    def paint_mouth(self, video, told, picture=None):
        """This model's mouth painter as serving applies it: `LPMMouthPainter.paint` of
        video (B, 3, T, H, W) told `told` (B, T), relative and at the strength the config
        says (the gain is the caller's: `told` is what the painter is told)."""
        online = self.cfg.online
        return self.mouth_painter.paint(
            video,
            told,
            picture,
            relative=online.mouth_painter_relative,
            strength=online.mouth_painter_strength,
        )

    def set_audio_norm(self, on: bool = True) -> None:
        """Turn `DiTConfig.audio_norm` on (or off) in every transformer of a built model, with
        new config objects (the one the model was built from may be shared). No weights
        change: a checkpoint trained either way loads into either."""
        dit = dataclasses.replace(self.cfg.dit, audio_norm=on)
        self.cfg = dataclasses.replace(self.cfg, dit=dit)
        for net in (self.base, self.backbone, self.refiner):
            if net is None:
                continue
            net.cfg = dataclasses.replace(net.cfg, audio_norm=on)
            for block in net.blocks:
                block.audio_attn.normalize = on

    def set_ref_concat(self) -> None:
        """Turn `DiTConfig.ref_concat` on in every transformer of a built model (new config
        objects): each patch embedding gains z_dim input channels for the reference latent,
        their weights zero, so the model computes exactly what it did until trained."""
        if self.cfg.dit.ref_concat:
            return
        self.cfg = dataclasses.replace(
            self.cfg, dit=dataclasses.replace(self.cfg.dit, ref_concat=True)
        )
        for net in (self.base, self.backbone, self.refiner):
            if net is None:
                continue
            net.cfg = dataclasses.replace(net.cfg, ref_concat=True)
            old = net.patch_embedding
            new = nn.Conv3d(
                old.in_channels + net.z_dim,
                old.out_channels,
                kernel_size=old.kernel_size,
                stride=old.stride,
            ).to(old.weight.device, old.weight.dtype)
            with torch.no_grad():
                new.weight.zero_()
                new.weight[:, : old.in_channels] = old.weight
                new.bias.copy_(old.bias)
            net.patch_embedding = new

    def init_online_from_base(self) -> None:
        """Distillation starts the Backbone from the Base weights."""
        if self.base is not None:
            self.backbone.load_state_dict(self.base.state_dict())

    def param_counts(self) -> dict[str, int]:
        """Parameters by part. `total` is what the Online system holds at serving time:
        VAE + trunk + audio + text + references (none: they are tokens) + Refiner.
        The Base teacher (same shape as the trunk) is reported apart, not in the total."""

        def count(m: nn.Module | None) -> int:
            return sum(p.numel() for p in m.parameters()) if m is not None else 0

        audio_in_trunk = sum(
            p.numel()
            for n, p in self.backbone.named_parameters()
            if any(mk in f".{n}" for mk in AUDIO_PARAM_MARKERS)
        )
        counts = {
            "vae": count(self.vae),
            "trunk": count(self.backbone) - audio_in_trunk,
            "audio": count(self.audio_encoder) + audio_in_trunk,
            "text": count(self.text_encoder),
            "references": 0,
            "refiner": count(self.refiner),
            "mouth_head": count(self.mouth_head),
            "mouth_painter": count(self.mouth_painter),
        }
        counts["total"] = sum(counts.values())
        counts["base_teacher"] = count(self.base)
        return counts


def build_model(
    cfg: LPMConfig, device: str | torch.device = "cpu", seed: int = 0, with_base: bool = True
) -> LPMModel:
    """Random initialisation (deterministic per seed); on the meta device nothing is allocated."""
    torch.manual_seed(seed)
    with torch.device(device):
        # Always built, so random weights are the same with or without the Base teacher.
        model = LPMModel(cfg, with_base=True)
    if str(device) != "meta":
        model.init_online_from_base()
    if not with_base:
        model.base = None
    return model.eval()
