"""Event: `detected`, with label, score and box, for each new detection of a pipeline."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import EVENT_DETECTED
from .entity import PipelineEntity, async_add_pipeline_entities
from .models import EdgeInferenceConfigEntry
from .pipeline import CameraPipeline
from .sensor_pipeline_entities import SensorAnomalyEvent, async_add_sensor_pipeline_entities

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One event entity per pipeline."""
    async_add_pipeline_entities(
        entry, async_add_entities, per_pipeline=lambda pipeline: [DetectionEvent(pipeline)]
    )
    async_add_sensor_pipeline_entities(entry, async_add_entities, SensorAnomalyEvent)


class DetectionEvent(PipelineEntity, EventEntity):
    """Fires `detected` when a watched object appears."""

    _attr_translation_key = "detection"

    def __init__(self, pipeline: CameraPipeline) -> None:
        """Keyed `detection`."""
        super().__init__(pipeline, "detection")
        self._attr_event_types = [EVENT_DETECTED]

    async def async_added_to_hass(self) -> None:
        """Follow the pipeline's events."""
        await super().async_added_to_hass()
        self.async_on_remove(self.pipeline.async_add_event_listener(self._on_detected))

    @callback
    def _handle_pipeline_update(self) -> None:
        """Counts and images do not change this entity."""

    @callback
    def _on_detected(self, event: dict[str, Any]) -> None:
        self._trigger_event(EVENT_DETECTED, event)
        self.async_write_ha_state()
