"""Server settings: every field can be set by an `NNSPEC_*` environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_POLL_SECONDS = 5.0
_HOST_NAME = set("abcdefghijklmnopqrstuvwxyz0123456789.-_:[]")


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def host_pattern(entry: str) -> str:
    """An --allowed-hosts entry, lower case, IPv6 in brackets: a host name or `*.domain`, or a ValueError."""
    host = entry.strip().lower()
    name = host[2:] if host.startswith("*.") else host
    if not name or not set(name) <= _HOST_NAME:
        raise ValueError(f"{entry!r} is not a host name or *.domain")
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Settings(BaseSettings):
    """How `nnspec serve` serves a model repository."""

    model_config = SettingsConfigDict(env_prefix="NNSPEC_", extra="ignore")

    repository: Path = Field(Path("models"), description="the model repository folder")
    api_key_env: str | None = Field(None, description="name of the env var holding the API key (model routes); "
                                                      "unset = no key required")
    model_control: Literal["none", "explicit", "poll"] = Field(
        "none", description="none: the models found at start, no load/unload; explicit: load/unload requests "
                            "with the admin key; poll: rescan the repository every poll_seconds")
    admin_key_env: str | None = Field(None, description="name of the env var holding the admin key that "
                                                        "load/unload demand (explicit control only)")
    poll_seconds: float | None = Field(None, gt=0, description=f"poll control: rescan the repository this often "
                                                              f"(default {DEFAULT_POLL_SECONDS:g})")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        [], description="Host headers answered (comma-separated; *.domain for its subdomains); empty = any")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="origins whose web pages may call the API (CORS, comma-separated); empty = none")
    max_body_mb: float = Field(16.0, gt=0, description="request bodies above this get 413")
    max_instances: int = Field(1024, ge=1, description="rows per request above this get 413")
    batching: bool = Field(True, description="merge concurrent requests into one onnxruntime run")
    max_queue: int = Field(256, ge=1, description="queued requests per model before 503")
    max_versions: int = Field(3, ge=1, description="versions of each model kept loaded: the newest ones that load")
    intra_op_threads: int | None = Field(None, ge=1, description="onnxruntime threads per run; "
                                                                 "default: cores / workers")
    workers: int = Field(1, ge=1, description="server processes sharing the machine's cores")
    max_pixels: int = Field(64_000_000, ge=1, description="image pixels per request, summed over its images "
                                                          "and read from their headers, above this get 413")
    body_timeout: float = Field(30.0, gt=0, description="seconds to receive a request body before 408")
    ui: bool = Field(True, description="the model pages: the repository at / and each model at /models/{name}")

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):  # an NNSPEC_* variable or a CLI value
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        return [host_pattern(host) for host in hosts]

    @model_validator(mode="after")
    def _control_options_fit(self) -> "Settings":
        # Options that would do nothing, or could not work, are errors: no option is silently ignored.
        problem = None
        if self.poll_seconds is not None and self.model_control != "poll":
            problem = "--poll-seconds needs --model-control poll"
        elif self.admin_key_env and self.model_control != "explicit":
            problem = "--admin-key-env needs --model-control explicit"
        elif self.model_control == "explicit" and not self.admin_key_env:
            problem = "--model-control explicit needs --admin-key-env (the key that load and unload demand)"
        elif self.model_control == "explicit" and self.workers > 1:
            problem = ("--model-control explicit needs --workers 1: each worker process has its own models; "
                       "with several workers use --model-control poll")
        if problem:
            raise PydanticCustomError("options", problem)
        return self

    @property
    def max_body_bytes(self) -> int:
        """The body limit in bytes."""
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def poll_interval(self) -> float | None:
        """Seconds between repository polls with poll control, else None."""
        if self.model_control != "poll":
            return None
        return self.poll_seconds or DEFAULT_POLL_SECONDS

    def threads_per_run(self) -> int:
        """onnxruntime intra-op threads, so that threads x workers stay within the cores."""
        return self.intra_op_threads or max(1, available_cores() // self.workers)

    def environment(self) -> dict[str, str | None]:
        """The `NNSPEC_*` variables that rebuild these settings in a worker process (None: unset it)."""
        env: dict[str, str | None] = {}
        for field, value in self.model_dump(mode="json").items():
            if isinstance(value, list):
                value = ",".join(value)
            env[f"NNSPEC_{field.upper()}"] = None if value is None else str(value)
        return env
