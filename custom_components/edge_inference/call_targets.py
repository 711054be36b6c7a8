"""What a tool call names in the home: checked, mended and held to the home's names.

HA's entity intents (HassTurnOn, HassLightSet, HassGetState, ...) pick their entities by
`name`, `area` and `floor`; a small model fills those with what it guesses. `fit_targets`
mends the usual slips against the home's vocabulary (home_vocabulary.py), `retarget_set_value`
moves a number set with the wrong intent to the right one, `unknown_targets` and `has_target`
say when a call still cannot act, and `tool_call_schema` is the JSON schema a retry is then
constrained to, with the targets held to the names the home has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .tool_recovery import TextToolCall, base_name

if TYPE_CHECKING:
    from .home_vocabulary import HomeVocabulary

# The arguments of HA's entity intents (HassTurnOn, HassLightSet, HassGetState, ...) that name
# a thing in the home. A tool is such an intent when it also takes `domain` or `floor`
# (HassClimateSetTemperature takes no domain): a timer's `name` is free text, and timers take
# neither.
TARGET_SLOTS = ("name", "area", "floor")
_ENUMERATED = 3  # device classes in one call from which on they are a list, not a choice


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
    - a room plus a floor the home does not have: the room says it; a domain plus a copy of
      the device-class list (every class the schema offers): the domain says it. One or two
      device classes beside a room are a choice ("the windows in the kitchen") and stay."""
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
    classes = fitted.get("device_class")
    if fitted.get("domain") and isinstance(classes, list) and len(classes) >= _ENUMERATED:
        del fitted["device_class"]  # the schema's list copied out, not a choice
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
    intent = base_name(call.name)
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
        tool = next((t for t in offered if base_name(t) == other), None)
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
    properties = parameters.get("properties") or {}
    return "domain" in properties or "floor" in properties


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
