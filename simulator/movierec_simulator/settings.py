"""Simulator settings from the environment (prefix MOVIEREC_SIMULATOR_), built once at the edge."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    """Defaults for the CLI, the metadata API under gunicorn, and the client mode."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_SIMULATOR_", extra="ignore")

    users: int = Field(default=2000, ge=1)
    movies: int = Field(default=500, ge=1)
    seed: int = 0
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8083, ge=0, le=65535)
    kafka_connect_timeout_s: float = Field(default=10.0, gt=0)
    request_timeout_s: float = Field(default=2.0, gt=0)
