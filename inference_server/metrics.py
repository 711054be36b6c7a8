"""Prometheus metrics (prometheus-client), one registry per server instance."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Recent latencies per pipeline/model for the MQTT stats message (p50/p95).
    recent: dict[str, deque[float]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "edge_inference_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "edge_inference_inference_seconds",
            "End-to-end pipeline latency",
            ["pipeline", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "edge_inference_queue_depth", "Requests waiting per model", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "edge_inference_batch_size",
            "Requests per backend call",
            ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 16, 32),
            registry=r,
        )
        self.backend_errors = Counter(
            "edge_inference_backend_errors",
            "Failed backend calls",
            ["backend", "model"],
            registry=r,
        )
        self.backend_ready = Gauge(
            "edge_inference_backend_ready", "1 when the backend serves", ["backend"], registry=r
        )
        self.camera_frames = Counter(
            "edge_inference_camera_frames", "Frames processed per camera", ["camera"], registry=r
        )
        # For dashboards and alerts (deploy/grafana, deploy/prometheus): time per HTTP route
        # (speech, chat and sensor requests too), and the queue limit the depth is measured
        # against (--max-queue), so "queue near full" needs no copied number.
        self.request_seconds = Histogram(
            "edge_inference_request_seconds",
            "HTTP request handling time per route (streams: until the response ends)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_limit = Gauge(
            "edge_inference_queue_limit",
            "Requests that may wait per model (--max-queue)",
            registry=r,
        )

    def observe_latency(self, pipeline: str, model: str, seconds: float) -> None:
        self.latency.labels(pipeline, model).observe(seconds)
        self.recent.setdefault(f"{pipeline}/{model}", deque(maxlen=500)).append(seconds)

    def latency_summary(self) -> dict[str, dict[str, float]]:
        summary = {}
        for key, values in self.recent.items():
            ordered = sorted(values)
            if ordered:
                summary[key] = {
                    "p50": round(ordered[len(ordered) // 2] * 1000, 2),
                    "p95": round(
                        ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2
                    ),
                }
        return summary

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
