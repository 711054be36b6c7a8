"""Tool calls written as text by small models, recovered instead of spoken."""

from __future__ import annotations

from typing import Any

import probatio as vol
import pytest
from homeassistant.components.conversation import ToolResultContent
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm
from homeassistant.util.json import JsonObjectType

from custom_components.edge_inference.call_targets import (
    fit_targets,
    has_target,
    retarget_set_value,
    tool_call_schema,
    unknown_targets,
)
from custom_components.edge_inference.home_vocabulary import HomeVocabulary
from custom_components.edge_inference.llm_entity import COULD_NOT, DONE, Toolbox, TurnCalls
from custom_components.edge_inference.question_guard import is_question, only_reads
from custom_components.edge_inference.tool_recovery import (
    CallInProse,
    TextToolCall,
    calls_in_answer,
    loads_repaired,
    may_be_tool_text,
    parse_tool_text,
)

TOOLS = {"HassTurnOn", "HassTurnOff"}
CALL = '{"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}'
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


def test_a_tool_named_with_the_wrong_api_prefix_is_the_offered_one() -> None:
    tools = {"intent__HassTurnOn", "climate__HassClimateSetTemperature"}
    text = '{"name": "intent__HassClimateSetTemperature", "arguments": {"temperature": 22}}'
    assert parse_tool_text(text, tools) == [
        TextToolCall("climate__HassClimateSetTemperature", {"temperature": 22})
    ]
    assert parse_tool_text('{"name": "HassTurnOn", "arguments": {}}', tools) == [
        TextToolCall("intent__HassTurnOn", {})
    ]
    # Two APIs offering the same intent: no guessing.
    assert parse_tool_text(text, tools | {"other__HassClimateSetTemperature"}) is None


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


def test_an_answer_cut_off_by_the_token_limit_keeps_what_came_before() -> None:
    # Qwen2.5-0.5B lists every device class until max_tokens stops it mid-list.
    text = '{"name": "HassTurnOn", "arguments": {"name": "Reading lamp", "device_class": ["a", '
    assert loads_repaired(text) == {
        "name": "HassTurnOn",
        "arguments": {"name": "Reading lamp", "device_class": ["a"]},
    }
    assert loads_repaired('{"name": "HassTurnOn", "arguments": {"name": "x", "area"') == {
        "name": "HassTurnOn",
        "arguments": {"name": "x"},
    }


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
    turn_on = turn_on["anyOf"][0]  # a name of the home's, or a room (below)
    assert turn_on["properties"]["name"] == {
        "type": "string",
        "enum": ["Bed light", "Reading lamp"],
    }
    assert turn_on["properties"]["area"]["enum"] == ["Bedroom"]
    assert "enum" not in turn_on["properties"]["domain"]
    assert timer == TIMER  # not an entity intent: left as it is


HOME = HomeVocabulary(
    names=("Bed light", "Front door", "Ceiling light"),
    areas=("Bedroom", "Living room", "Hall"),
    floors=("Upstairs",),
    domains_of={
        "bed light": frozenset({"light"}),
        "front door": frozenset({"lock", "binary_sensor"}),
        "ceiling light": frozenset({"light"}),
    },
    areas_of={
        "bed light": frozenset({"bedroom"}),
        "front door": frozenset({"hall"}),
        "ceiling light": frozenset({"bedroom", "living room"}),  # one in each
    },
    floors_of={"bed light": frozenset({"upstairs"})},
)


@pytest.mark.parametrize(
    ("arguments", "fitted"),
    [
        # What Qwen2.5-0.5B wrote for "Turn on the bed light" (bench/llm_actions.py).
        (
            {
                "name": "bed light",
                "area": "Living Room",
                "floor": "Living Room",
                "domain": "light",
                "device_class": ["identify"],
            },
            {"name": "Bed light", "domain": "light"},
        ),
        ({"name": "Bed light", "domain": ["switch"]}, {"name": "Bed light"}),  # rules it out
        ({"name": "Bed light", "area": "bedroom"}, {"name": "Bed light", "area": "Bedroom"}),
        ({"name": "Bed light", "floor": "Upstairs"}, {"name": "Bed light", "floor": "Upstairs"}),
        ({"name": " front_door", "domain": ["lock"]}, {"name": "Front door", "domain": ["lock"]}),
        # The area tells the two ceiling lights apart: kept.
        (
            {"name": "Ceiling light", "area": "Living room"},
            {"name": "Ceiling light", "area": "Living room"},
        ),
        # A room as the name ("turn off the lights in the living room"), with a floor the home
        # does not have and every device class listed: the room and the domain say it.
        (
            {
                "name": "living room",
                "floor": "Living Room",
                "domain": ["light"],
                "device_class": ["identify", "restart", "blind"],
            },
            {"area": "Living room", "domain": ["light"]},
        ),
        ({"area": "Bedroom", "floor": "Upstairs"}, {"area": "Bedroom", "floor": "Upstairs"}),
        # "Open the windows in the living room": one device class beside a room is a choice.
        (
            {"area": "Living room", "domain": ["cover"], "device_class": ["window"]},
            {"area": "Living room", "domain": ["cover"], "device_class": ["window"]},
        ),
        # Names the home does not have are left for unknown_targets to refuse.
        ({"name": "Garage", "domain": ["switch"]}, {"name": "Garage", "domain": ["switch"]}),
        ({"area": "Bedroom", "domain": ["light"]}, {"area": "Bedroom", "domain": ["light"]}),
    ],
)
def test_a_small_models_slips_about_the_home_are_mended(
    arguments: dict[str, Any], fitted: dict[str, Any]
) -> None:
    assert fit_targets(arguments, TURN_ON, HOME) == fitted
    assert fit_targets(arguments, TIMER, HOME) == arguments  # not an entity intent


def test_a_climate_intent_is_mended_too() -> None:
    # HassClimateSetTemperature takes no domain, but names the home's things as the others do:
    # Qwen2.5-1.5B set "the thermostat" with area "Living Room", where it is not.
    climate = {
        "type": "object",
        "properties": {
            "temperature": {"type": "number"},
            "name": {"type": "string"},
            "area": {"type": "string"},
            "floor": {"type": "string"},
        },
    }
    arguments = {"name": "bed light", "area": "Living room", "temperature": 22}
    assert fit_targets(arguments, climate, HOME) == {"name": "Bed light", "temperature": 22}
    assert unknown_targets({"name": "pizza oven"}, climate, KNOWN) == ["name"]


def test_an_entity_intent_must_say_what_it_acts_on() -> None:
    assert not has_target({"position": 22}, TURN_ON)
    assert has_target({"name": "Bed light"}, TURN_ON)
    assert has_target({"domain": ["light"]}, TURN_ON)  # "turn off all the lights"
    assert has_target({"minutes": 5}, TIMER)


def test_retry_schema_asks_for_a_name_or_a_room_of_the_home() -> None:
    tools = [{"type": "function", "function": {"name": "HassTurnOn", "parameters": TURN_ON}}]
    arguments = tool_call_schema(tools, KNOWN)["properties"]["arguments"]
    assert [option["required"] for option in arguments["anyOf"]] == [["name"], ["area"]]
    assert all(
        o["properties"]["name"]["enum"] == ["Bed light", "Reading lamp"] for o in arguments["anyOf"]
    )


def _result(call: llm.ToolInput, data: dict[str, Any], error: bool = False) -> ToolResultContent:
    return ToolResultContent(
        agent_id="conversation.test",
        tool_call_id=call.id,
        tool_name=call.tool_name,
        result=llm.ToolResult(data, error=error),
    )


def test_a_turn_knows_its_calls_and_whether_they_worked() -> None:
    turn = TurnCalls()
    on = llm.ToolInput(tool_name="HassTurnOn", tool_args={"name": "Bed light"})
    again = llm.ToolInput(tool_name="HassTurnOn", tool_args={"name": "Bed light"})
    assert not turn.made(again)
    assert not turn.echoed('{"speech": {}}', {})  # no call yet: JSON is said as it is
    turn.add(on)
    turn.finished(_result(on, {"response_type": "action_done", "data": {"success": [{}]}}))
    assert turn.made(again)  # the same call, asked for again (a new id)
    assert turn.carried_out(again)
    assert turn.all_carried_out()
    assert turn.echoed('{"speech": {}, "response_type": "action_done"}', {})
    assert turn.echoed('<tool_response>\n{"speech": {}}\n</tool_response>', {})  # SmolLM2
    # Qwen2.5-0.5B: the call again, then a made-up result.
    assert turn.echoed('{"name": "HassTurnOff", "arguments": {}}\n{"result": "ok"}', {})
    assert not turn.echoed("The bed light is on.", {})
    assert not turn.echoed('{"colour": "red"}', {"response_format": {}})  # AI Task's JSON

    off = llm.ToolInput(tool_name="HassTurnOff", tool_args={"name": "Desk lamp"})
    turn.add(off)
    turn.finished(_result(off, {"data": {"success": [], "failed": [{}]}}))
    assert not turn.carried_out(off)
    assert not turn.all_carried_out()
    failed = llm.ToolInput(tool_name="HassTurnOff", tool_args={"name": "x"})
    turn.add(failed)
    turn.finished(_result(failed, {"error": "MatchFailedError"}, error=True))
    assert not turn.carried_out(failed)


OFFERED = ["intent__HassTurnOn", "light__HassLightSet", "climate__HassClimateSetTemperature"]
THERMOSTAT = HomeVocabulary(
    names=("Bed light", "Thermostat"),
    areas=(),
    floors=(),
    domains_of={"bed light": frozenset({"light"}), "thermostat": frozenset({"climate"})},
)


@pytest.mark.parametrize(
    ("call", "retargeted"),
    [
        # What Qwen2.5-0.5B called for "Set the bed light to 50% brightness".
        (
            TextToolCall("intent__HassSetPosition", {"name": "bed_light", "position": 50}),
            TextToolCall("light__HassLightSet", {"name": "bed_light", "brightness": 50}),
        ),
        (
            TextToolCall("intent__HassSetPosition", {"name": "thermostat", "position": 22}),
            TextToolCall(
                "climate__HassClimateSetTemperature", {"name": "thermostat", "temperature": 22}
            ),
        ),
    ],
)
def test_a_value_set_with_the_wrong_intent_goes_to_the_right_one(
    call: TextToolCall, retargeted: TextToolCall
) -> None:
    assert retarget_set_value(call, OFFERED, THERMOSTAT) == retargeted


@pytest.mark.parametrize(
    "call",
    [
        TextToolCall("light__HassLightSet", {"name": "Bed light", "brightness": 50}),  # fits
        TextToolCall("intent__HassSetPosition", {"name": "Garage", "position": 50}),  # unknown
        TextToolCall("intent__HassSetPosition", {"area": "Kitchen", "position": 50}),  # no name
        TextToolCall("intent__HassTurnOn", {"name": "Bed light"}),  # sets no value
    ],
)
def test_other_calls_keep_their_intent(call: TextToolCall) -> None:
    assert retarget_set_value(call, OFFERED, THERMOSTAT) is call


def _stream(chunks: list[str]) -> tuple[str, str]:
    watch = CallInProse()
    said = "".join(watch.feed(chunk) for chunk in chunks)
    rest, tail = watch.finish()
    return said + rest, tail


def test_prose_streams_until_a_call_may_begin() -> None:
    # How Qwen2.5-Coder-1.5B answers "Turn on the bed light", token by token.
    chunks = [
        "To turn on ",
        "the bed light, use",
        ":\n\n`",
        "``json\n{\n",
        '  "name": "HassTurnOn"',
        "}\n```",
    ]
    said, tail = _stream(chunks)
    assert said == "To turn on the bed light, use:\n\n"
    assert tail == '```json\n{\n  "name": "HassTurnOn"}\n```'
    assert _stream(["The light ", "is on."]) == ("The light is on.", "")
    assert _stream(["Press `", "on`"]) == ("Press `on`", "")  # one backtick is no fence


@pytest.mark.parametrize(
    "tail",
    [
        f"```json\n{CALL}\n```\nThis turns it on.",
        f"{CALL} will turn it on.",
        f"<tool_call>{CALL}</tool_call> Done",
    ],
)
def test_a_call_after_prose_is_found_whatever_follows_it(tail: str) -> None:
    assert calls_in_answer(tail, TOOLS) == [ON]


def test_json_after_prose_that_is_no_call_stays_text() -> None:
    assert calls_in_answer('{"colour": "blue"} is my answer', TOOLS) is None
    assert calls_in_answer("```python\nprint('hi')\n```", TOOLS) is None


@pytest.mark.parametrize(
    ("text", "language", "question"),
    [
        ("Is the garage door open?", None, True),
        ("What is the thermostat set to?", None, True),
        ("Ist die Garage offen?", None, True),
        ("¿Está abierta la puerta del garaje?", None, True),
        ("Turn on the kitchen light", None, False),
        ("Can you open the garage door?", None, False),  # a polite request
        ("Could you turn the heating up?", None, False),
        ("Kannst du das Licht einschalten?", None, False),
        ("¿Puedes encender la luz?", None, False),
        ("Czy możesz włączyć światło?", None, False),
        # As speech-to-text writes them: no question mark.
        ("is the garage door open", "en", True),
        ("What's the temperature in the kitchen", "en-GB", True),
        ("how warm is it upstairs", "en", True),
        ("ist die Garage offen", "de", True),
        ("welche Lichter sind an", "de-CH", True),
        ("est-ce que la porte est ouverte", "fr", True),
        ("está abierta la puerta del garaje", "es", True),
        ("è accesa la luce in cucina", "it", True),
        ("staat de lamp aan", "nl", False),  # a verb that also opens commands: not guessed
        ("hoe warm is het", "nl", True),
        ("qual é a temperatura", "pt", True),
        ("czy światło jest włączone", "pl", True),
        # Commands stay commands.
        ("turn on the kitchen light", "en", False),
        ("schalte das Licht ein", "de", False),
        ("allume la lumière", "fr", False),
        ("isolate the office", "en", False),  # a word that only starts like "is"
        ("can you open the garage door", "en", False),
        ("czy możesz włączyć światło", "pl", False),
        # A language without a list: only the question mark counts.
        ("is the garage door open", "sv", False),
        ("is the garage door open", None, False),
    ],
)
def test_questions_are_told_from_requests(text: str, language: str | None, question: bool) -> None:
    assert is_question(text, language) is question


def test_tools_that_only_read() -> None:
    reads = ["homeassistant__GetLiveContext", "GetDateTime", "todo_get_items", "HassTimerStatus"]
    acts = ["intent__HassTurnOn", "climate__HassClimateSetTemperature", "open_garage"]
    assert all(only_reads(name) for name in reads)
    assert not any(only_reads(name) for name in acts)


class _Tool(llm.Tool):
    """A tool offered to the model; never called here."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = None
        self.parameters = vol.Schema({})

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        raise AssertionError("not called in these tests")


def test_a_question_is_answered_from_the_live_context_not_acted_on() -> None:
    """Qwen2.5 0.5B answered "Is the garage door open?" with HassTurnOn on the garage door."""
    names = ["homeassistant__GetLiveContext", "intent__HassTurnOn", "GetDateTime"]
    toolbox = Toolbox(by_name={name: _Tool(name) for name in names})
    open_door = llm.ToolInput(tool_name="intent__HassTurnOn", tool_args={"name": "Garage door"})
    open_again = llm.ToolInput(tool_name="intent__HassTurnOn", tool_args={"name": "Garage"})
    answered = toolbox.answering([open_door, open_again])
    assert [(c.tool_name, c.tool_args) for c in answered] == [("homeassistant__GetLiveContext", {})]
    clock = llm.ToolInput(tool_name="GetDateTime", tool_args={})
    assert toolbox.answering([clock]) == [clock]
    no_context = Toolbox(by_name={"intent__HassTurnOn": _Tool("intent__HassTurnOn")})
    assert no_context.answering([open_door]) == []


def test_a_question_is_answered_without_tools_once_the_states_are_read() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Is it open?"}], "tools": [{}]}
    turn = TurnCalls(question=True)
    assert turn.request(body) is body  # first round: the tools to read with
    turn.add(llm.ToolInput(tool_name="GetLiveContext", tool_args={}))
    answer = turn.request(body)
    assert "tools" not in answer
    assert answer["messages"][:-1] == body["messages"]
    assert answer["messages"][-1]["role"] == "system"
    command = TurnCalls()
    command.add(llm.ToolInput(tool_name="HassTurnOn", tool_args={"name": "Bed light"}))
    assert command.request(body) is body  # a command keeps its tools (more may follow)


def test_done_never_answers_a_question() -> None:
    assert TurnCalls().reply(True) == DONE
    assert TurnCalls(question=True).reply(True) == COULD_NOT
