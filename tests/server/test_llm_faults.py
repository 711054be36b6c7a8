"""The LLM proxy when upstreams fail: down, killed mid-stream, hung; failover and recovery.

Two real llama-server processes serve the same model; the proxy checks them every second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.broker import free_port
from tests.helpers.llama_server import LlamaServer
from tests.helpers.server_process import ServerProcess

from .llm_common import AUTH, chat_body, model_path, needs_llama, post_chat, proxy_server

pytestmark = needs_llama


@pytest.fixture
def single(tmp_path: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(model_path(), tmp_path / "a")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    servers = (
        LlamaServer(model_path(), tmp_path / "a"),
        LlamaServer(model_path(), tmp_path / "b"),
    )
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def start_proxy(tmp_path: Path, upstreams: list[str], *extra: str) -> ServerProcess:
    server = proxy_server(tmp_path / "proxy", upstreams, "--llm-health-interval", "1", *extra)
    server.start()
    return server


async def upstream_ready(proxy: ServerProcess, name: str) -> bool:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/api/v1/info", headers=AUTH) as resp,
    ):
        return bool((await resp.json())["backends"][f"llm:{name}"]["ready"])


async def wait_ready(proxy: ServerProcess, name: str, ready: bool) -> None:
    deadline = time.monotonic() + 20
    while await upstream_ready(proxy, name) != ready:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never became ready={ready}")
        await asyncio.sleep(0.2)


async def test_no_upstream_up_is_a_503_with_retry_after(tmp_path: Path) -> None:
    proxy = start_proxy(tmp_path, [f"ghost=http://127.0.0.1:{free_port()}"])
    try:
        status, body, headers = await post_chat(proxy.url, chat_body("hi", model="ghost"))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{proxy.url}/v1/models", headers=AUTH) as resp,
        ):
            models = (await resp.json())["data"]
    finally:
        proxy.stop()
    assert status == 503
    assert body["error"]["code"] == "upstream_unavailable"
    assert int(headers["Retry-After"]) >= 1
    assert [(m["id"], m["ready"]) for m in models] == [("ghost", False)]


async def test_failover_to_the_other_upstream_and_recovery(
    tmp_path: Path, pair: tuple[LlamaServer, LlamaServer]
) -> None:
    first, second = pair
    names = [f"127.0.0.1:{s.port}" for s in pair]
    proxy = start_proxy(tmp_path, [f"smollm2={s.url}" for s in pair])
    try:
        first.kill()
        # Requests keep being answered, by the survivor, before and after the proxy notices.
        for _ in range(3):
            status, body, headers = await post_chat(proxy.url, chat_body("hi"))
            assert status == 200, body
            assert headers["X-Edge-Inference-Upstream"] == names[1]
        await wait_ready(proxy, names[0], False)
        second.kill()
        status, body, headers = await post_chat(proxy.url, chat_body("hi"))
        assert status == 503
        assert "Retry-After" in headers
        # The recovery loop finds a restarted upstream on its own.
        first.start()
        await wait_ready(proxy, names[0], True)
        status, body, headers = await post_chat(proxy.url, chat_body("hi"))
        assert status == 200, body
        assert headers["X-Edge-Inference-Upstream"] == names[0]
    finally:
        proxy.stop()


async def test_upstream_killed_mid_stream_ends_with_an_error_event(
    tmp_path: Path, single: LlamaServer
) -> None:
    first = single
    proxy = start_proxy(tmp_path, [first.url])
    body = chat_body("Tell a long story.", stream=True, max_tokens=2000, ignore_eos=True)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proxy.url}/v1/chat/completions", json=body, headers=AUTH) as resp,
        ):
            assert resp.status == 200
            lines = []
            async for raw in resp.content:
                lines.append(raw.strip())
                if sum(1 for x in lines if x.startswith(b"data:")) == 5:
                    first.kill()
        events = [x for x in lines if x.startswith(b"data:")]
        assert b'"error"' in events[-1]
        assert b"upstream_failed" in events[-1]
        assert b"[DONE]" not in b"".join(events)
        # The server serves on: health answers, and a new request gets a clean 503.
        status, answer, _ = await post_chat(proxy.url, chat_body("hi"))
        assert status == 503
        assert answer["error"]["code"] == "upstream_unavailable"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{proxy.url}/api/v1/health") as health,
        ):
            assert health.status == 200
    finally:
        proxy.stop()


async def test_hung_upstream_times_out_instead_of_hanging(
    tmp_path: Path, single: LlamaServer
) -> None:
    first = single
    proxy = start_proxy(tmp_path, [f"smollm2={first.url}"], "--llm-timeout", "2")
    try:
        first.freeze()  # accepts connections, answers nothing
        status, body, headers = await asyncio.wait_for(
            post_chat(proxy.url, chat_body("hi")), timeout=30
        )
        assert status == 503
        assert body["error"]["code"] == "upstream_timeout"
        assert "Retry-After" in headers
        first.thaw()
        await wait_ready(proxy, f"127.0.0.1:{first.port}", True)
        status, body, _ = await post_chat(proxy.url, chat_body("hi"))
        assert status == 200, body
    finally:
        first.thaw()
        proxy.stop()


class _ClosingUpstream:
    """An OpenAI-style upstream that closes the connection of the first chat request unanswered,
    as llama-server does when it drops a kept-alive connection just as a request goes out.

    A stand-in on purpose: that race with the real llama-server (its 5 s idle timeout against
    the request's send) cannot be brought about on demand."""

    def __init__(self) -> None:
        self.chats = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return f"smollm2=http://127.0.0.1:{self.port}"

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            if b"/v1/chat/completions" in head.split(b"\r\n", 1)[0]:
                self.chats += 1
                if self.chats == 1:
                    writer.close()
                    return
                body: dict[str, object] = {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]
                }
            else:
                body = {"object": "list", "data": [{"id": "smollm2", "object": "model"}]}
            data = json.dumps(body).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()


async def test_a_connection_closed_unanswered_is_sent_again_not_a_503(tmp_path: Path) -> None:
    async with _ClosingUpstream() as upstream:
        proxy = start_proxy(tmp_path, [upstream])
        try:
            name = f"127.0.0.1:{upstream.rsplit(':', 1)[1]}"
            await wait_ready(proxy, name, True)
            status, body, _ = await post_chat(proxy.url, chat_body("Hello"))
            assert status == 200, body
            assert body["choices"][0]["message"]["content"] == "hi"
            assert await upstream_ready(proxy, name)  # not taken out of the rotation
        finally:
            proxy.stop()
