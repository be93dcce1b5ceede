"""Settings of the identity service (`LPM_*` environment, or `[identity]` in $LPM_CONFIG)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    config_section: ClassVar[str] = "identity"

    port: int = 50051
    http_port: int = 9464
    max_image_bytes: int = 10 * 1024 * 1024
    # Refused from the header, before decoding: guards against decompression bombs.
    max_image_pixels: int = 40_000_000
    # The model that encodes reference sets; latents are cached per model version.
    model_preset: str = "tiny"
    model_checkpoint: str = ""  # folder with model.safetensors + config.json; empty: random init
    # Empty: the pipeline's own default name ("<preset>-random-seed0", or the checkpoint folder's
    # name); set it explicitly in production to the registry's version string.
    model_version: str = ""
    encode_workers: int = 1
    encode_device: str = "cpu"
    # The janitor removes objects no row points at once they are older than the grace period.
    janitor_interval_s: float = 600.0  # 0 disables it
    janitor_grace_s: float = 3600.0

    @property
    def effective_model_version(self) -> str:
        if self.model_version:
            return self.model_version
        if self.model_checkpoint:
            return self.model_checkpoint.rstrip("/").rsplit("/", 1)[-1]
        return f"{self.model_preset}-random-seed0"
