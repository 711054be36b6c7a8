"""Switch: detection on a camera pipeline (off pauses it, and the server's stream)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity
from homeassistant.const import STATE_OFF, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .entity import PipelineEntity, async_add_pipeline_entities
from .models import EdgeInferenceConfigEntry
from .pipeline import CameraPipeline

PARALLEL_UPDATES = 1


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One switch per pipeline."""
    async_add_pipeline_entities(
        entry, async_add_entities, per_pipeline=lambda pipeline: [DetectionSwitch(pipeline)]
    )


class DetectionSwitch(PipelineEntity, SwitchEntity, RestoreEntity):
    """On: the pipeline detects; off: paused. Kept across restarts."""

    _attr_entity_category = EntityCategory.CONFIG
    _attr_translation_key = "detection"

    def __init__(self, pipeline: CameraPipeline) -> None:
        """Keyed `detection_enabled`."""
        super().__init__(pipeline, "detection_enabled")

    async def async_added_to_hass(self) -> None:
        """Restore a pause (the pipeline starts after its entities are added)."""
        await super().async_added_to_hass()
        if (last := await self.async_get_last_state()) is not None and last.state == STATE_OFF:
            self.pipeline.enabled = False

    @property
    def is_on(self) -> bool:
        """Whether the pipeline detects."""
        return self.pipeline.enabled

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Resume detection."""
        await self.pipeline.async_set_enabled(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Pause detection."""
        await self.pipeline.async_set_enabled(False)
