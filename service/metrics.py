"""Prometheus metrics, in a registry per app so that several apps (tests, workers) never clash.

With several workers (`serve --workers N`) `serve` sets `PROMETHEUS_MULTIPROC_DIR` to a fresh
folder before they start: each worker writes its values there and `/metrics`, whichever worker
answers it, reports all of them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The server's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        r = self.registry
        self.requests = Counter("nnspec_requests", "HTTP requests by model, version, endpoint and status",
                                ["model", "version", "endpoint", "status"], registry=r)
        self.latency = Histogram("nnspec_request_duration_seconds", "HTTP request latency",
                                 ["model", "endpoint"], buckets=_LATENCY, registry=r)
        self.queue_time = Histogram("nnspec_queue_duration_seconds", "time from queueing to the batch run",
                                    ["model", "version"], buckets=_LATENCY, registry=r)
        self.inference_time = Histogram("nnspec_inference_duration_seconds", "onnxruntime run time per batch",
                                        ["model", "version"], buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("nnspec_batch_size", "rows per onnxruntime run",
                                    ["model", "version"], buckets=_ROWS, registry=r)
        # Workers can disagree for a moment (each polls the repository itself): "liveall" reports each
        # running worker's value with a `pid` label rather than a sum or a max that would hide it.
        self.models_loaded = Gauge("nnspec_models_loaded", "model versions loaded", ["model"], registry=r,
                                   multiprocess_mode="liveall")

    def exposition(self) -> bytes:
        """The Prometheus text: this app's metrics, or in multiprocess mode every worker's."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """Drop this worker's live gauges as it exits (multiprocess mode)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())
