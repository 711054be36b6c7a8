"""Tool calls written as text by small models, recovered instead of spoken."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.edge_inference.tool_recovery import (
    TextToolCall,
    loads_repaired,
    may_be_tool_text,
    parse_tool_text,
    tool_call_schema,
)

TOOLS = {"HassTurnOn", "HassTurnOff"}
ON = TextToolCall("HassTurnOn", {"name": "kitchen light"})


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}',
        '  {"name": "HassTurnOn", "parameters": {"name": "kitchen light"}}\n',
        '<tool_call>\n{"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}\n</tool_call>',
        '```json\n{"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}\n```',
        '[{"function": {"name": "HassTurnOn", "arguments": "{\\"name\\": \\"kitchen light\\"}"}}]',
        # The slips small models make: a trailing comma, the last brace missing.
        '{"name": "HassTurnOn", "arguments": {"name": "kitchen light",}}',
        '{"name": "HassTurnOn", "arguments": {"name": "kitchen light"}',
    ],
)
def test_calls_written_as_text_are_recovered(text: str) -> None:
    assert may_be_tool_text(text[:3])
    assert parse_tool_text(text, TOOLS) == [ON]


def test_several_calls_in_one_answer() -> None:
    text = (
        '<tool_call>{"name": "HassTurnOn", "arguments": {"name": "a"}}</tool_call>\n'
        '<tool_call>{"name": "HassTurnOff", "arguments": {"name": "b"}}</tool_call>'
    )
    assert parse_tool_text(text, TOOLS) == [
        TextToolCall("HassTurnOn", {"name": "a"}),
        TextToolCall("HassTurnOff", {"name": "b"}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "The kitchen light is on.",
        '{"name": "HassOpenThePodBayDoors", "arguments": {}}',  # not an offered tool
        '{"colour": "blue"}',  # JSON, but no call: it is said as it is
        '{"name": "HassTurnOn", "arguments": "not json at all"}',
        "{not json",
    ],
)
def test_text_that_is_no_call_stays_text(text: str) -> None:
    assert parse_tool_text(text, TOOLS) is None


@pytest.mark.parametrize(
    ("start", "held"),
    [("Sure", False), ("The", False), ("{", True), ("<", True), ("<tool", True), ("```", True)],
)
def test_answers_are_held_back_only_while_they_may_be_a_call(start: str, held: bool) -> None:
    assert may_be_tool_text(start) is held


def test_repair_reads_python_literals() -> None:
    assert loads_repaired('{"on": True, "area": None}') == {"on": True, "area": None}


def test_retry_schema_allows_exactly_the_offered_calls() -> None:
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in sorted(TOOLS)
    ]
    schema = tool_call_schema(tools)
    names = [option["properties"]["name"]["enum"] for option in schema["anyOf"]]
    assert names == [["HassTurnOff"], ["HassTurnOn"]]
    assert all(option["required"] == ["name", "arguments"] for option in schema["anyOf"])
