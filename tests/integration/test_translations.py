"""strings.json, translations/en.json, icons.json and services.yaml agree with the code."""

from __future__ import annotations

import json
import re

import yaml

from .common import ROOT

COMPONENT = ROOT / "custom_components" / "edge_inference"


def load(name: str) -> dict:
    """A JSON file of the integration."""
    return json.loads((COMPONENT / name).read_text(encoding="utf-8"))


def test_en_is_strings() -> None:
    """HA reads translations/en.json for custom integrations; it must equal strings.json."""
    assert load("strings.json") == load("translations/en.json")


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
