"""The OpenAI-compatible proxy in front of the real llama-server on SmolLM2-135M-Instruct."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.broker import MosquittoBroker
from tests.helpers.llama_server import CHATML_TOOLS_TEMPLATE, LlamaServer
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN
from .llm_common import (
    AUTH,
    chat_body,
    model_path,
    needs_llama,
    post_chat,
    proxy_server,
    read_events,
    streamed_text,
)

pytestmark = needs_llama

TURN_ON = {
    "type": "function",
    "function": {
        "name": "HassTurnOn",
        "description": "Turns on a device or entity",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    # One slot and a small context: the priority and overflow tests rely on both.
    server = LlamaServer(
        model_path(),
        tmp_path_factory.mktemp("llama"),
        ctx_size=1024,
        extra_args=["--chat-template-file", str(CHATML_TOOLS_TEMPLATE)],
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, llama: LlamaServer) -> Iterator[ServerProcess]:
    # A bare URL: the model list comes from llama-server's /v1/models (its --alias).
    server = proxy_server(tmp_path_factory.mktemp("proxy"), [llama.url])
    server.start()
    yield server
    server.stop()


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics", headers=AUTH) as r:
        return await r.text()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample (labels matched as given), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_models_lists_what_llama_server_serves(proxy: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/v1/models", headers=AUTH) as resp,
    ):
        body = await resp.json()
    assert resp.status == 200
    assert body["object"] == "list"
    assert [(m["id"], m["ready"]) for m in body["data"]] == [("smollm2", True)]


async def test_chat_completion_answers_with_text_and_usage(
    proxy: ServerProcess, llama: LlamaServer
) -> None:
    status, body, headers = await post_chat(proxy.url, chat_body("What is the capital of France?"))
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"].strip()
    assert body["usage"]["completion_tokens"] > 0
    assert headers["X-Edge-Inference-Upstream"] == f"127.0.0.1:{llama.port}"


async def test_stream_gives_the_same_answer_as_direct_llama_server(
    proxy: ServerProcess, llama: LlamaServer
) -> None:
    body = chat_body("Name three colours.", stream=True, max_tokens=24)
    texts = []
    for url in (llama.url, proxy.url):
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/v1/chat/completions", json=body, headers=AUTH) as resp,
        ):
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            events = await read_events(resp)
        assert events[-1] == {"done": True}
        assert "timings" in events[-2]  # llama-server's own, passed through untouched
        texts.append(streamed_text(events))
    assert texts[0].strip()
    assert texts[1] == texts[0]  # greedy decoding: the proxy changes nothing


async def test_tools_and_response_format_pass_through(proxy: ServerProcess) -> None:
    plain = chat_body("Turn on the kitchen light.", max_tokens=1)
    # Tools and a past tool call reach llama-server's template: the prompt grows by them.
    history = [
        {"role": "user", "content": "Turn on the hall light."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {"name": "HassTurnOn", "arguments": '{"name": "hall light"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-1", "content": '{"success": true}'},
    ]
    with_tools = {
        **plain,
        "tools": [TURN_ON],
        "messages": [*history, *plain["messages"]],
    }
    sizes = []
    for body in (plain, with_tools):
        status, answer, _ = await post_chat(proxy.url, body)
        assert status == 200, answer
        sizes.append(answer["usage"]["prompt_tokens"])
    assert sizes[1] > sizes[0] + 60
    # response_format becomes llama-server's grammar: the answer is held to the schema.
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
    }
    body = chat_body(
        "Pick a colour.",
        max_tokens=32,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    status, answer, _ = await post_chat(proxy.url, body)
    assert status == 200, answer
    assert json.loads(answer["choices"][0]["message"]["content"])["colour"] in {
        "red",
        "green",
        "blue",
    }


async def test_metrics_per_upstream_and_model(proxy: ServerProcess, llama: LlamaServer) -> None:
    before = await metrics_text(proxy.url)
    body = chat_body("Say hello.", stream=True)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/chat/completions", json=body, headers=AUTH) as resp,
    ):
        await read_events(resp)
    after = await metrics_text(proxy.url)
    labels = {"upstream": f"127.0.0.1:{llama.port}", "model": "smollm2"}
    for name in (
        "edge_inference_llm_time_to_first_token_seconds_count",
        "edge_inference_llm_tokens_per_second_count",
    ):
        assert metric(after, name, **labels) == metric(before, name, **labels) + 1, name
    assert metric(after, "edge_inference_llm_completion_tokens_total", **labels) > metric(
        before, "edge_inference_llm_completion_tokens_total", **labels
    )
    assert metric(after, "edge_inference_llm_upstream_up", upstream=labels["upstream"]) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ("not json", {}, 400, "invalid_json"),
        ([1, 2], {}, 400, "invalid_json"),
        ({"model": "smollm2"}, {}, 400, "invalid_parameter"),
        ({"model": "smollm2", "messages": "hi"}, {}, 400, "invalid_parameter"),
        (
            {"model": 7, "messages": [{"role": "user", "content": "hi"}]},
            {},
            400,
            "invalid_parameter",
        ),
        (chat_body("hi", stream="yes"), {}, 400, "invalid_parameter"),
        (chat_body("hi", model="gpt-5"), {}, 404, "unknown_model"),
        (chat_body("hi"), {"X-Edge-Inference-Priority": "urgent"}, 400, "invalid_parameter"),
    ],
)
async def test_malformed_requests_get_a_clear_4xx(
    proxy: ServerProcess, body: object, headers: dict[str, str], status: int, code: str
) -> None:
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, str) else json.dumps(body)
        async with session.post(
            f"{proxy.url}/v1/chat/completions",
            data=data,
            headers={**AUTH, **headers, "Content-Type": "application/json"},
        ) as resp:
            answer = await resp.json()
    assert resp.status == status
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


async def test_context_overflow_is_a_400_naming_it(proxy: ServerProcess) -> None:
    long_text = " ".join(f"word{i}" for i in range(3000))  # far past the 1024-token context
    status, body, _ = await post_chat(proxy.url, chat_body(long_text))
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert "context" in body["error"]["message"]


async def test_token_is_required(proxy: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}/v1/chat/completions", json=chat_body("hi")) as resp,
    ):
        assert resp.status == 401


async def test_voice_goes_before_queued_batch_work(proxy: ServerProcess) -> None:
    """One llama-server slot: a voice request waiting behind batch work is served next."""
    done: list[str] = []
    long = chat_body("Tell a long story.", max_tokens=160, ignore_eos=True)

    async def ask(name: str, body: dict[str, object], priority: str) -> None:
        status, answer, _ = await post_chat(
            proxy.url, body, {"X-Edge-Inference-Priority": priority}
        )
        assert status == 200, answer
        done.append(name)

    async def queued() -> float:
        text = await metrics_text(proxy.url)
        return sum(
            float(m.group(1))
            for m in re.finditer(r"^edge_inference_llm_queue_depth\{[^}]*\} (\S+)$", text, re.M)
        )

    async def wait_for_queue(depth: float) -> None:
        for _ in range(200):  # 20 s at most
            if await queued() >= depth:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"queue never reached {depth}")

    first = asyncio.create_task(ask("batch-1", long, "batch"))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(ask("batch-2", long, "batch"))
    await wait_for_queue(1)  # batch-2 waits while batch-1 runs
    voice = asyncio.create_task(ask("voice", chat_body("Turn on the light."), "voice"))
    await wait_for_queue(2)
    await asyncio.wait_for(asyncio.gather(first, second, voice), 120)
    assert done == ["batch-1", "voice", "batch-2"]


async def test_models_are_announced_on_mqtt(
    tmp_path: Path, llama: LlamaServer, broker: MosquittoBroker, watcher: MqttWatcher
) -> None:
    server = ServerProcess(
        tmp_path / "server",
        mqtt_port=broker.port,
        token=TOKEN,
        extra_args=["--llm-upstream", llama.url],
    )
    server.start()
    try:
        announce = watcher.wait_for("edge_inference/test-server/announce")
    finally:
        server.stop()
    payload = json.loads(announce.payload)
    llm = payload["capabilities"]["llm"]
    assert llm["api"] == "/v1"
    assert llm["models"] == [{"name": "smollm2", "ready": True}]
    assert payload["backends"][f"llm:127.0.0.1:{llama.port}"]["ready"] is True
