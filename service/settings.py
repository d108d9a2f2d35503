"""Server settings: every field can be set by an `NNSPEC_*` environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """How `nnspec serve` serves a model repository."""

    model_config = SettingsConfigDict(env_prefix="NNSPEC_", extra="ignore")

    repository: Path = Field(Path("models"), description="the model repository folder")
    api_key_env: str | None = Field(None, description="name of the env var holding the API key; "
                                                      "unset = no key required")
    max_body_mb: float = Field(16.0, gt=0, description="request bodies above this get 413")
    max_instances: int = Field(1024, ge=1, description="rows per request above this get 413")
    batching: bool = Field(True, description="merge concurrent requests into one onnxruntime run")
    max_queue: int = Field(256, ge=1, description="queued requests per model before 503")
    poll_seconds: float = Field(0.0, ge=0, description="rescan the repository this often; 0 = never")
    max_versions: int = Field(3, ge=1, description="newest versions of each model kept loaded")
    intra_op_threads: int | None = Field(None, ge=1, description="onnxruntime threads per run; "
                                                                 "default: cores / workers")
    workers: int = Field(1, ge=1, description="server processes sharing the machine's cores")
    max_pixels: int = Field(64_000_000, ge=1, description="image pixels per request, summed over its images "
                                                          "and read from their headers, above this get 413")
    body_timeout: float = Field(30.0, gt=0, description="seconds to receive a request body before 408")

    @property
    def max_body_bytes(self) -> int:
        """The body limit in bytes."""
        return int(self.max_body_mb * 1024 * 1024)

    def threads_per_run(self) -> int:
        """onnxruntime intra-op threads, so that threads x workers stay within the cores."""
        return self.intra_op_threads or max(1, available_cores() // self.workers)
