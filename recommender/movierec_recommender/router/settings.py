"""Settings of the router (env prefix MOVIEREC_ROUTER_), built by the entry point."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RouterSettings(BaseSettings):
    """Where tracks live, where assignment comes from, and the limits the router enforces."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_ROUTER_", extra="ignore")

    tracks: dict[str, str] = Field(
        default_factory=dict, description='track name -> upstream base URL, JSON: {"stable": "..."}'
    )
    stable_track: str = "stable"
    flags_file: str | None = Field(default=None, description="LaunchDarkly flag-data file")
    sdk_key: SecretStr | None = Field(default=None, description="LaunchDarkly SDK key (online)")
    flag_poll_seconds: float = Field(default=1.0, gt=0, description="flag file change check")
    ld_start_wait_seconds: float = Field(default=5.0, ge=0)

    budget_ms: float = Field(default=800.0, gt=0, description="hard answer budget")
    canary_timeout_ms: float = Field(
        default=250.0, gt=0, description="time a non-stable track gets before stable answers"
    )
    connect_timeout_ms: float = Field(default=100.0, gt=0)
    pool_size: int = Field(
        default=64,
        ge=1,
        description="upstream calls in flight at once per worker (and keep-alive connections "
        "per upstream); more requests wait in order, and are shed after waiting 250 ms",
    )

    rate_limit_rps: float = Field(
        default=100.0, ge=0, description="requests/s per client and worker (0 = no limit)"
    )
    rate_limit_burst: float = Field(default=200.0, ge=1)
    rate_limit_clients: int = Field(default=10_000, ge=1, description="clients tracked at once")
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="proxies in front that append to X-Forwarded-For; 0: key by the peer address",
    )

    @field_validator("tracks")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"track {name!r}: upstream must be an http(s) URL, got {url!r}")
        return {name: url.rstrip("/") for name, url in value.items()}
