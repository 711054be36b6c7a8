"""Tool calls that small models write as text, turned back into tool calls.

Small local models often answer a request to act with the call written out, in one of the
shapes their training used, instead of a native tool call:

    {"name": "HassTurnOn", "arguments": {"name": "kitchen light"}}
    <tool_call>{"name": "HassTurnOn", "parameters": {...}}</tool_call>
    ```json [{"function": {"name": "HassTurnOn", "arguments": "{...}"}}] ```

`parse_tool_text` finds such calls (after a light repair of the JSON) for the tools offered;
`tool_call_schema` is the JSON schema a retry is constrained to when a call cannot be used,
with the targets of HA's entity intents held to the names the home has (`unknown_targets`
finds a call that names something the home does not have).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .home_vocabulary import HomeVocabulary

_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.S)
_TAGGED = re.compile(r"<(?:tool_call|function_call|tools?)>\s*(.*?)\s*(?:</[a-z_]+>|$)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_CALL_MARKERS = ("```", "{", "<tool_call>")
_MAX_CUTS = 8  # items dropped from the end of a cut-off answer, at most
_PREFIXES = ("{", "[", "<tool_call>", "<function_call>", "<tool>", "```")
# The arguments of HA's entity intents (HassTurnOn, HassLightSet, HassGetState, ...) that name
# a thing in the home. A tool is such an intent when it also takes `domain`: a timer's `name`
# is free text.
TARGET_SLOTS = ("name", "area", "floor")


@dataclass(frozen=True)
class TextToolCall:
    """A call found in the text: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]


def may_be_tool_text(text: str) -> bool:
    """Whether an answer that starts so might be a call written as text (hold it back)."""
    start = text.lstrip()
    return any(start.startswith(p) or p.startswith(start) for p in _PREFIXES) if start else False


def parse_tool_text(text: str, tool_names: set[str]) -> list[TextToolCall] | None:
    """The calls written in `text`, or None when it is not (only) calls to offered tools."""
    body = text.strip()
    if fenced := _FENCE.match(body):
        body = fenced.group(1)
    tagged = _TAGGED.findall(body)
    chunks = tagged if tagged else [body]
    calls: list[TextToolCall] = []
    for chunk in chunks:
        value = loads_repaired(chunk)
        if value is None:
            return None
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item, tool_names)
            if call is None:
                return None
            calls.append(call)
    return calls or None


def calls_in_answer(text: str, tool_names: set[str]) -> list[TextToolCall] | None:
    """The calls written from the start of `text` (a code fence, a JSON object or <tool_call>
    tags), whatever prose follows them; None when there are none."""
    body = text.strip()
    if body.startswith("```"):
        end = body.find("```", 3)
        return parse_tool_text(body[: end + 3] if end > 0 else body, tool_names)
    if body.startswith("{"):
        try:  # the first whole object; what follows it is prose
            value, _end = json.JSONDecoder().raw_decode(body)
        except ValueError:  # not whole: cut off, or slips to repair
            return parse_tool_text(body, tool_names)
        return parse_tool_text(json.dumps(value), tool_names)
    return parse_tool_text(body, tool_names)


class CallInProse:
    """Streams an answer's prose, holding it back from where a call may be written (a code
    fence, a brace, a <tool_call> tag) to its end: bigger small models explain first ("To turn
    on the bed light, use this command:") and write the call after."""

    def __init__(self) -> None:
        self._pending = ""  # what may be the start of a marker
        self._tail: str | None = None

    def feed(self, text: str) -> str:
        """The text that may be said now."""
        if self._tail is not None:
            self._tail += text
            return ""
        self._pending += text
        starts = [i for m in _CALL_MARKERS if (i := self._pending.find(m)) >= 0]
        if starts:
            at = min(starts)
            out, self._tail, self._pending = self._pending[:at], self._pending[at:], ""
            return out
        keep = max(
            (k for m in _CALL_MARKERS for k in range(1, len(m)) if self._pending.endswith(m[:k])),
            default=0,
        )
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def finish(self) -> tuple[str, str]:
        """What is left to say, and the held part from a marker on ("" when none came)."""
        return self._pending, self._tail or ""


def loads_repaired(text: str) -> Any:
    """json.loads, after the usual slips of a small model: trailing commas, Python literals,
    unclosed brackets at the end, an answer cut off by the token limit (what came before the
    last complete item is kept). None when still not JSON."""
    text = text.strip()
    candidates = [text, _repair(text)]
    cut = text
    for _ in range(_MAX_CUTS):
        if (comma := cut.rfind(",")) <= 0:
            break
        cut = cut[:comma]
        candidates.append(_repair(cut))
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def result_read_back(text: str) -> bool:
    """Whether an answer that follows tool results is JSON (the result copied out, often with
    the call again before it) or a copied <tool_response>: nothing to say to a person."""
    return text.lstrip().startswith(("{", "[", "<tool_response>"))


def tool_call_schema(
    tools: list[dict[str, Any]], known: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """A JSON schema whose every instance is one valid call of one of the OpenAI `tools`;
    with `known` (slot -> the home's names), entity intents may name only those."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [tool["function"]["name"]]},
                "arguments": _constrain_targets(
                    tool["function"].get("parameters") or {"type": "object"}, known or {}
                ),
            },
            "required": ["name", "arguments"],
        }
        for tool in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def unknown_targets(
    arguments: Mapping[str, Any],
    parameters: Mapping[str, Any],
    known: Mapping[str, Sequence[str]],
) -> list[str]:
    """The target arguments of an entity intent's call that name nothing the home has
    (compared as HA's intent matching does: stripped, case-folded)."""
    if not _targets_entities(parameters):
        return []
    unknown = []
    for slot in TARGET_SLOTS:
        value = arguments.get(slot)
        names = {n.strip().casefold() for n in known.get(slot, ())}
        if isinstance(value, str) and names and value.strip().casefold() not in names | {""}:
            unknown.append(slot)
    return unknown


def fit_targets(
    arguments: dict[str, Any], parameters: Mapping[str, Any], home: HomeVocabulary
) -> dict[str, Any]:
    """An entity intent's arguments with a small model's usual slips about the home mended.

    Small models fill every slot they are shown, so HA would answer "no entity matched":
    - a name spelt as an id ("front_door") or padded with spaces: the home's own spelling;
    - a room given as the entity's name ("turn off the living room"): the area;
    - a named entity plus an area, floor, domain or device class it is not in ("Bed light",
      area "Living room", device class "identify"): the name alone picks it, so those go;
    - a room plus a floor the home does not have, or a domain plus device classes: the room,
      and the domain, say it."""
    if not _targets_entities(parameters):
        return arguments
    fitted = dict(arguments)
    for slot in TARGET_SLOTS:
        if isinstance(value := fitted.get(slot), str):
            fitted[slot] = _home_spelling(value, home.values(slot))
    name = fitted.get("name")
    key = name.casefold() if isinstance(name, str) else ""
    areas = _folded(home.areas)
    if (
        key
        and key not in home.domains_of
        and key in areas
        and fitted.get("area") in (None, "", name)
    ):
        fitted["area"] = _home_spelling(fitted.pop("name"), home.areas)
        key = ""
    if key in home.domains_of:
        for slot, where in (("area", home.areas_of), ("floor", home.floors_of)):
            value = fitted.get(slot)
            if isinstance(value, str) and value.casefold() not in where.get(key, frozenset()):
                del fitted[slot]
        domains = fitted.get("domain")
        wanted = {domains} if isinstance(domains, str) else set(domains or ())
        if wanted and not home.domains_of[key] & wanted:
            del fitted["domain"]
        fitted.pop("device_class", None)
        return fitted
    area, floor = fitted.get("area"), fitted.get("floor")
    room_known = isinstance(area, str) and area.casefold() in areas
    if room_known and isinstance(floor, str) and floor.casefold() not in _folded(home.floors):
        del fitted["floor"]
    if fitted.get("domain"):
        fitted.pop("device_class", None)
    return fitted


# HA's intents that set a number on an entity: the domains each acts on, and its argument.
SET_VALUE_INTENTS: dict[str, tuple[frozenset[str], str]] = {
    "HassLightSet": (frozenset({"light"}), "brightness"),
    "HassClimateSetTemperature": (frozenset({"climate"}), "temperature"),
    "HassSetPosition": (frozenset({"cover", "valve"}), "position"),
    "HassFanSetSpeed": (frozenset({"fan"}), "percentage"),
    "HassSetVolume": (frozenset({"media_player"}), "volume_level"),
}


def retarget_set_value(
    call: TextToolCall, offered: Sequence[str], home: HomeVocabulary
) -> TextToolCall:
    """A call that sets a number on an entity its intent cannot act on ("set the bed light to
    50 %" as HassSetPosition), as the offered intent that sets that number on that entity's
    domain (HassLightSet, brightness 50). Any other call is returned as it is."""
    intent = call.name.rsplit("__", 1)[-1]  # HA 2026.10 names tools "<api>__<intent>"
    if intent not in SET_VALUE_INTENTS:
        return call
    domains, slot = SET_VALUE_INTENTS[intent]
    value = call.arguments.get(slot)
    name = call.arguments.get("name")
    key = name.replace("_", " ").strip().casefold() if isinstance(name, str) else ""
    named = home.domains_of.get(key, frozenset())
    if not isinstance(value, int | float | str) or not named or named & domains:
        return call
    for other, (other_domains, other_slot) in SET_VALUE_INTENTS.items():
        tool = next((t for t in offered if t.rsplit("__", 1)[-1] == other), None)
        if tool is not None and named & other_domains:
            targets = {k: v for k, v in call.arguments.items() if k in TARGET_SLOTS}
            return TextToolCall(tool, {**targets, other_slot: value})
    return call


def has_target(arguments: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Whether an entity intent's call says what it acts on (HA refuses to act on everything)."""
    if not _targets_entities(parameters):
        return True
    return any(arguments.get(slot) for slot in (*TARGET_SLOTS, "domain", "device_class"))


def _home_spelling(value: str, names: Sequence[str]) -> str:
    by_key = {n.casefold(): n for n in names}
    for candidate in (value.strip(), value.replace("_", " ").strip()):
        if (found := by_key.get(candidate.casefold())) is not None:
            return found
    return value.strip()


def _folded(names: Sequence[str]) -> set[str]:
    return {n.casefold() for n in names}


def _targets_entities(parameters: Mapping[str, Any]) -> bool:
    return "domain" in (parameters.get("properties") or {})


def _constrain_targets(
    parameters: dict[str, Any], known: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    if not _targets_entities(parameters):
        return parameters
    properties = dict(parameters["properties"])
    for slot in TARGET_SLOTS:
        if slot in properties and known.get(slot):
            properties[slot] = {**properties[slot], "enum": list(known[slot])}
    constrained = {**parameters, "properties": properties}
    # Without a name or a room the call would act on every entity of a domain (or fail): the
    # retry must pick one of the home's, which a small model does well from the user's words.
    required = list(parameters.get("required") or [])
    picks = [slot for slot in ("name", "area") if slot in properties and known.get(slot)]
    if not picks:
        return constrained
    options = [{**constrained, "required": [*required, slot]} for slot in picks]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _as_call(item: Any, tool_names: set[str]) -> TextToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # OpenAI's own shape, written out
        item = item["function"]
    name = offered_tool(item.get("name") or item.get("tool") or item.get("tool_name"), tool_names)
    if name is None:
        return None
    arguments = item.get("arguments", item.get("parameters", item.get("args", {})))
    if isinstance(arguments, str):
        arguments = loads_repaired(arguments) if arguments.strip() else {}
    if not isinstance(arguments, dict):
        return None
    return TextToolCall(name, arguments)


def offered_tool(name: Any, tool_names: set[str]) -> str | None:
    """The offered tool a call names: as written, or the one tool with that intent when the
    model got HA's "<api>__" prefix wrong or left it out ("intent__HassClimateSetTemperature"
    for "climate__HassClimateSetTemperature")."""
    if not isinstance(name, str) or name in tool_names:
        return name if isinstance(name, str) else None
    intent = name.rsplit("__", 1)[-1]
    same = [tool for tool in tool_names if tool.rsplit("__", 1)[-1] == intent]
    return same[0] if len(same) == 1 else None


def _repair(text: str) -> str:
    text = _TRAILING_COMMA.sub(r"\1", text)
    text = re.sub(r"\bTrue\b", "true", text)
    text = re.sub(r"\bFalse\b", "false", text)
    text = re.sub(r"\bNone\b", "null", text)
    # Close what the model left open (it often stops right before the last brace).
    closers = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
    if in_string:
        text += '"'
    return _TRAILING_COMMA.sub(r"\1", text + "".join(reversed(closers)))
