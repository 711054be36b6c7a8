"""HA's chat log as OpenAI messages: a tool round trip, on HA 2026.10's content types."""

from __future__ import annotations

import json

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm

from custom_components.edge_inference.llm_entity import chat_messages


async def test_a_tool_round_trip_becomes_openai_messages(hass: HomeAssistant) -> None:
    # `hass` for the deprecation check (common.no_deprecations): reading a tool result through
    # HA's old `tool_result` shim is reported, and fails from HA 2027.11.
    call = llm.ToolInput(tool_name="HassTurnOn", tool_args={"name": "bed light"}, id="call-1")
    result = llm.ToolResult({"speech": {}, "response_type": "action_done"})
    content: list[conversation.Content] = [
        conversation.SystemContent(
            "You control a home.\nCurrent time is 12:00:00. Today's date is 2026-12-03.\n"
        ),
        conversation.UserContent("Turn on the bed light"),
        conversation.AssistantContent(agent_id="conversation.a", tool_calls=[call]),
        conversation.ToolResultContent(
            agent_id="conversation.a", tool_call_id="call-1", tool_name="HassTurnOn", result=result
        ),
        conversation.AssistantContent(agent_id="conversation.a", content="Done."),
    ]
    messages = chat_messages(content, max_history=10)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[0]["content"] == "You control a home."  # the clock moved out of it
    assert messages[1]["content"] == (
        "Current time is 12:00:00. Today's date is 2026-12-03.\nTurn on the bed light"
    )
    assert messages[2]["tool_calls"] == [
        {
            "id": "call-1",
            "type": "function",
            "function": {"name": "HassTurnOn", "arguments": '{"name": "bed light"}'},
        }
    ]
    assert messages[3]["tool_call_id"] == "call-1"
    assert json.loads(messages[3]["content"]) == {"speech": {}, "response_type": "action_done"}
