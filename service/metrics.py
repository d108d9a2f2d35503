"""Prometheus metrics, in a registry per app so that several apps (tests, workers) never clash."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The server's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.models_loaded = Gauge("nnspec_models_loaded", "model versions loaded", ["model"], registry=r)
