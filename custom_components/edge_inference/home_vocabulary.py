"""What an assistant can name in this home: exposed entities, their devices, areas, floors.

The Assist agent holds a small model's calls to these names: a call that targets a name the
home does not have is retried with the names as a JSON-schema enum (see tool_recovery), where
HA would otherwise answer "no entity matched" and the model would read that error aloud.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import floor_registry as fr
from homeassistant.helpers import intent


@dataclass(frozen=True)
class HomeVocabulary:
    """The names a call's `name`, `area` and `floor` arguments can take, as users wrote them."""

    names: tuple[str, ...]
    areas: tuple[str, ...]
    floors: tuple[str, ...]
    # Each name (case-folded) -> the domains of the entities it names, and the areas and
    # floors (their names and aliases, case-folded) those entities are in.
    domains_of: Mapping[str, frozenset[str]] = field(default_factory=dict)
    areas_of: Mapping[str, frozenset[str]] = field(default_factory=dict)
    floors_of: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def values(self, slot: str) -> tuple[str, ...]:
        return {"name": self.names, "area": self.areas, "floor": self.floors}.get(slot, ())


@callback
def async_home_vocabulary(hass: HomeAssistant, assistant: str) -> HomeVocabulary:
    """The vocabulary of what is exposed to `assistant` (conversation for Assist)."""
    entities = er.async_get(hass)
    devices = dr.async_get(hass)
    area_registry = ar.async_get(hass)
    floor_registry = fr.async_get(hass)
    names: list[str] = []
    domains_of: defaultdict[str, set[str]] = defaultdict(set)
    areas_of: defaultdict[str, set[str]] = defaultdict(set)
    floors_of: defaultdict[str, set[str]] = defaultdict(set)
    for state in hass.states.async_all():
        if not async_should_expose(hass, assistant, state.entity_id):
            continue
        entry = entities.async_get(state.entity_id)
        own = list(intent.async_get_entity_aliases(hass, entry, state=state))
        device = devices.async_get(entry.device_id) if entry and entry.device_id else None
        if device is not None:
            own.extend(n for n in (device.name_by_user, device.name) if n)
        names.extend(own)
        # The entity's area, else its device's (as HA's intent matching places it).
        area_id = (entry.area_id if entry else None) or (device.area_id if device else None)
        area = area_registry.async_get_area(area_id) if area_id else None
        floor = floor_registry.async_get_floor(area.floor_id) if area and area.floor_id else None
        for name in own:
            key = name.strip().casefold()
            domains_of[key].add(state.domain)
            areas_of[key].update(_folded(area.name, *area.aliases) if area else ())
            floors_of[key].update(_folded(floor.name, *floor.aliases) if floor else ())
    areas = area_registry.async_list_areas()
    floors = floor_registry.async_list_floors()
    return HomeVocabulary(
        names=_unique(names),
        areas=_unique(n for area in areas for n in (area.name, *area.aliases)),
        floors=_unique(n for floor in floors for n in (floor.name, *floor.aliases)),
        domains_of=_frozen(domains_of),
        areas_of=_frozen(areas_of),
        floors_of=_frozen(floors_of),
    )


def _folded(*names: str) -> set[str]:
    return {n.strip().casefold() for n in names}


def _frozen(sets: Mapping[str, set[str]]) -> dict[str, frozenset[str]]:
    return {key: frozenset(values) for key, values in sets.items()}


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in names if isinstance(n, str) and n.strip()))
