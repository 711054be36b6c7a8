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
    unknown_targets,
    without_contradicting_domain,
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


# HA's HassTurnOn and HassStartTimer, as format_tool writes them (parameters trimmed).
TURN_ON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "area": {"type": "string"},
        "domain": {"type": "array", "items": {"type": "string"}},
    },
}
TIMER: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "minutes": {"type": "integer"}},
}
KNOWN = {"name": ("Bed light", "Reading lamp"), "area": ("Bedroom",), "floor": ()}


@pytest.mark.parametrize(
    ("arguments", "unknown"),
    [
        ({"name": "Bed light"}, []),
        ({"name": " bed LIGHT ", "area": "bedroom"}, []),  # as HA matches: stripped, case-folded
        ({"name": "light"}, ["name"]),
        ({"name": "Bed light", "area": "Garage"}, ["area"]),
        ({"floor": "Upstairs"}, []),  # a home without floors: nothing to hold it to
        ({"domain": ["light"]}, []),
    ],
)
def test_entity_intents_must_name_what_the_home_has(
    arguments: dict[str, Any], unknown: list[str]
) -> None:
    assert unknown_targets(arguments, TURN_ON, KNOWN) == unknown


def test_a_timer_name_is_free_text() -> None:
    assert unknown_targets({"name": "pizza"}, TIMER, KNOWN) == []


def test_retry_schema_holds_entity_intents_to_the_homes_names() -> None:
    tools = [
        {"type": "function", "function": {"name": "HassTurnOn", "parameters": TURN_ON}},
        {"type": "function", "function": {"name": "HassStartTimer", "parameters": TIMER}},
    ]
    turn_on, timer = (o["properties"]["arguments"] for o in tool_call_schema(tools, KNOWN)["anyOf"])
    assert turn_on["properties"]["name"] == {
        "type": "string",
        "enum": ["Bed light", "Reading lamp"],
    }
    assert turn_on["properties"]["area"]["enum"] == ["Bedroom"]
    assert "enum" not in turn_on["properties"]["domain"]
    assert timer == TIMER  # not an entity intent: left as it is


DOMAINS_OF = {"bed light": frozenset({"light"}), "front door": frozenset({"lock", "binary_sensor"})}


@pytest.mark.parametrize(
    ("arguments", "kept"),
    [
        ({"name": "Bed light", "domain": ["switch"]}, {"name": "Bed light"}),  # rules it out
        ({"name": "Bed light", "domain": "switch"}, {"name": "Bed light"}),
        ({"name": "Bed light", "domain": ["light"]}, {"name": "Bed light", "domain": ["light"]}),
        ({"name": "Front door", "domain": ["lock"]}, {"name": "Front door", "domain": ["lock"]}),
        ({"name": "Garage", "domain": ["switch"]}, {"name": "Garage", "domain": ["switch"]}),
        ({"area": "Bedroom", "domain": ["light"]}, {"area": "Bedroom", "domain": ["light"]}),
    ],
)
def test_a_domain_that_rules_out_the_named_entity_is_dropped(
    arguments: dict[str, Any], kept: dict[str, Any]
) -> None:
    assert without_contradicting_domain(arguments, TURN_ON, DOMAINS_OF) == kept
    assert without_contradicting_domain(arguments, TIMER, DOMAINS_OF) == arguments
