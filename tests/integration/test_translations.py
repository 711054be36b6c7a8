"""strings.json, translations/en.json, icons.json and services.yaml agree with the code."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from homeassistant.core import HomeAssistant

from custom_components.edge_inference.llm_entity import TurnReplies, async_turn_replies

from .common import ROOT

COMPONENT = ROOT / "custom_components" / "edge_inference"


def load(name: str) -> dict:
    """A JSON file of the integration."""
    return json.loads((COMPONENT / name).read_text(encoding="utf-8"))


def test_en_is_strings() -> None:
    """HA reads translations/en.json for custom integrations; it must equal strings.json."""
    assert load("strings.json") == load("translations/en.json")


def _keys(tree: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        keys |= _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (COMPONENT / "translations").glob("*.json")), ids=str
)
def test_other_languages_translate_only_known_strings(path: str) -> None:
    """A translation may cover part of strings.json (HA falls back to English per key), but
    a key that strings.json lacks is a typo that would never be shown."""
    assert _keys(load(f"translations/{path}")) <= _keys(load("strings.json"))


async def test_the_agents_own_replies_are_in_the_users_language(hass: HomeAssistant) -> None:
    """What the agent says itself (a tool result read back as JSON) follows Assist's language,
    region tags included, and is English where no translation exists."""
    german = await async_turn_replies(hass, "de-CH")
    assert german == TurnReplies(
        done="Erledigt.",
        could_not="Entschuldigung, ich habe nicht herausgefunden, wie ich das machen soll.",
    )
    assert await async_turn_replies(hass, "sw") == TurnReplies()
    hass.config.language = "fr"
    assert (await async_turn_replies(hass, None)).done == "C\u2019est fait."


def test_keys_used_in_code_exist() -> None:
    """Every translation_key in the code has a string (exceptions, issues, entities)."""
    strings = load("strings.json")
    known = set(strings["exceptions"]) | set(strings["issues"])
    for platform in strings["entity"].values():
        known |= set(platform)
    known |= {"mode"}  # the selector's translation key
    code = "\n".join(p.read_text(encoding="utf-8") for p in COMPONENT.glob("*.py"))
    used = set(re.findall(r'translation_key(?:=|\s*=\s*)"([a-z_]+)"', code))
    used |= {"token_rejected", "incompatible_protocol"}
    assert used
    assert used <= known, used - known


def test_services_and_icons() -> None:
    """Each action field has a name and a description, and each action an icon."""
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text(encoding="utf-8"))
    strings = load("strings.json")["services"]
    icons = load("icons.json")["services"]
    for service, spec in services.items():
        assert set(spec["fields"]) == set(strings[service]["fields"])
        assert service in icons
    entity_icons = load("icons.json")["entity"]
    entity_strings = load("strings.json")["entity"]
    for platform, keys in entity_icons.items():
        assert set(keys) <= set(entity_strings[platform])
