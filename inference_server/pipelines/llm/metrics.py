"""Prometheus metrics of the LLM proxy, per upstream and model, on the server's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
RATE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500)


class LlmMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "edge_inference_llm_requests",
            "Chat completions sent upstream",
            ["upstream", "model", "priority"],
            registry=r,
        )
        self.ttft = Histogram(
            "edge_inference_llm_time_to_first_token_seconds",
            "From the request to the first generated token (the whole answer when not streamed)",
            ["upstream", "model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "edge_inference_llm_tokens_per_second",
            "Generation speed per request (llama-server's own timings where it sends them)",
            ["upstream", "model"],
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.completion_tokens = Counter(
            "edge_inference_llm_completion_tokens",
            "Generated tokens",
            ["upstream", "model"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "edge_inference_llm_queue_depth",
            "Requests waiting for a slot on the upstream",
            ["upstream"],
            registry=r,
        )
        self.errors = Counter(
            "edge_inference_llm_errors",
            "Failed upstream calls by kind (connect, timeout, status, broken_stream, rejected)",
            ["upstream", "model", "kind"],
            registry=r,
        )
        self.upstream_up = Gauge(
            "edge_inference_llm_upstream_up",
            "1 while the upstream passes its health check",
            ["upstream"],
            registry=r,
        )
