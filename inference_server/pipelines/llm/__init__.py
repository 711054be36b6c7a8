"""The LLM pipeline: an OpenAI-compatible proxy in front of llama-server, vLLM or LiteLLM."""

from .priority import Priority
from .proxy import LlmError, LlmPipeline, Reply, StreamBroken
from .upstreams import UpstreamSpec, UpstreamSpecError

__all__ = [
    "LlmError",
    "LlmPipeline",
    "Priority",
    "Reply",
    "StreamBroken",
    "UpstreamSpec",
    "UpstreamSpecError",
]
