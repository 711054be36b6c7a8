"""The automation blueprints shipped in blueprints/automation/edge_inference are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from homeassistant.components.automation.config import AUTOMATION_BLUEPRINT_SCHEMA
from homeassistant.components.blueprint import models
from homeassistant.util.yaml import loader

from .common import ROOT

BLUEPRINTS = sorted((ROOT / "blueprints" / "automation" / "edge_inference").glob("*.yaml"))


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_blueprint_is_valid(path: Path) -> None:
    """HA's own schema accepts the blueprint, and its inputs are all used."""
    blueprint = models.Blueprint(
        loader.load_yaml_dict(str(path)),
        expected_domain="automation",
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )
    text = path.read_text(encoding="utf-8")
    for name in blueprint.inputs:
        assert f"!input {name}" in text, name


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_blueprint_selectors_are_filtered_to_this_integration(path: Path) -> None:
    """Inputs that pick one of our entities offer only this integration's entities."""
    blueprint = models.Blueprint(
        loader.load_yaml_dict(str(path)),
        expected_domain="automation",
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )
    ours = {"event", "image", "binary_sensor", "sensor"}  # cameras come from any integration
    for name, spec in blueprint.inputs.items():
        entity = (spec or {}).get("selector", {}).get("entity")
        if entity is None:
            continue
        for entry in entity.get("filter", []):
            domains = entry.get("domain", [])
            domains = [domains] if isinstance(domains, str) else domains
            if set(domains) & ours:
                assert entry.get("integration") == "edge_inference", name
