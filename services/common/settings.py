"""Typed settings shared by every service: environment (`LPM_*`) plus an optional TOML file.

Precedence: constructor arguments, then environment, then the file named by `LPM_CONFIG`, then
defaults. The embedded default keeps everything under `$LPM_HOME` (default `~/.lpm`): a SQLite
database and a folder of objects, so nothing needs a server.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def lpm_home() -> Path:
    return Path(os.environ.get("LPM_HOME") or Path.home() / ".lpm").expanduser()


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the file named by `LPM_CONFIG`; a service's keys may sit under `[<service>]`."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = os.environ.get("LPM_CONFIG")
        data: dict[str, Any] = {}
        if path:
            data = tomllib.loads(Path(path).read_text())
        section = getattr(settings_cls, "config_section", "")
        merged = {k: v for k, v in data.items() if not isinstance(v, dict)}
        if section and isinstance(data.get(section), dict):
            merged.update(data[section])
        self._data = merged

    def get_field_value(self, field, field_name):  # required by the base class; unused
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class ServiceSettings(BaseSettings):
    """What every service reads. Subclasses add their own fields and a `config_section`."""

    model_config = SettingsConfigDict(env_prefix="LPM_", extra="ignore")
    config_section: ClassVar[str] = ""

    home: Path = Field(default_factory=lpm_home)
    # SQLAlchemy URL; empty means SQLite at $LPM_HOME/lpm.db.
    database_url: str = ""
    # "file:///path" (local folder) or "s3://bucket"; empty means $LPM_HOME/objects.
    object_store_url: str = ""
    s3_endpoint: str = ""  # host:port of the S3 server
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    host: str = "127.0.0.1"
    port: int = 50051  # gRPC; 0 picks a free port
    http_port: int = 9464  # Prometheus /metrics and signed downloads; 0 picks a free port, -1 off
    # Public base URL of the HTTP port for links handed to clients; empty: http://host:http_port.
    public_http_url: str = ""
    log_level: str = "INFO"
    log_format: str = "json"  # "json" or "text"
    otlp_endpoint: str = ""  # empty: no OpenTelemetry export at all
    shutdown_grace_s: float = 10.0  # in-flight calls get this long to finish on SIGTERM
    max_workers: int = 32
    auth_cache_s: float = 10.0  # a revoked key stops working within this long

    @model_validator(mode="after")
    def _fill_defaults(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'lpm.db'}"
        if not self.object_store_url:
            self.object_store_url = (self.home / "objects").as_uri()
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls,
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ):
        return (init_settings, env_settings, _TomlFileSource(settings_cls), file_secret_settings)
