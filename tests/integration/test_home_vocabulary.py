"""The names the Assist agent holds a small model's calls to, from a real HA's registries."""

from __future__ import annotations

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import floor_registry as fr
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.home_vocabulary import async_home_vocabulary


async def test_vocabulary_holds_exposed_names_aliases_devices_areas_and_floors(
    hass: HomeAssistant,
) -> None:
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {"bed_light": {"name": "Bed light"}, "safe": {"name": "Safe"}}},
    )
    upstairs = fr.async_get(hass).async_create("Upstairs", aliases={"first floor"})
    bedroom = ar.async_get(hass).async_create(
        "Bedroom", aliases={"sleeping room"}, floor_id=upstairs.floor_id
    )
    entry = MockConfigEntry(domain="test")
    entry.add_to_hass(hass)
    lamp = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={("test", "lamp")}, name="Bedside lamp"
    )
    er.async_get(hass).async_update_entity(
        "input_boolean.bed_light",
        # The entity's own name stays one of its names (as HA's alias editor keeps it), plus one.
        aliases=[er.COMPUTED_NAME, "night light"],
        area_id=bedroom.id,
        device_id=lamp.id,
    )
    async_expose_entity(hass, conversation.DOMAIN, "input_boolean.bed_light", True)
    async_expose_entity(hass, conversation.DOMAIN, "input_boolean.safe", False)
    await hass.async_block_till_done()

    vocabulary = async_home_vocabulary(hass, conversation.DOMAIN)

    assert {"Bed light", "night light", "Bedside lamp"} <= set(vocabulary.names)
    assert "Safe" not in vocabulary.names  # not exposed to Assist: a call may not name it
    assert set(vocabulary.areas) == {"Bedroom", "sleeping room"}
    assert set(vocabulary.floors) == {"Upstairs", "first floor"}
    assert vocabulary.values("domain") == ()
    assert vocabulary.domains_of["night light"] == {"input_boolean"}
    assert vocabulary.domains_of["bedside lamp"] == {"input_boolean"}
    # Where each name is, aliases included: what a call's area and floor are checked against.
    assert vocabulary.areas_of["night light"] == {"bedroom", "sleeping room"}
    assert vocabulary.floors_of["bed light"] == {"upstairs", "first floor"}
