"""Image: the latest annotated detection of a camera pipeline."""

from __future__ import annotations

from datetime import datetime

from homeassistant.components.image import ImageEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import PipelineEntity, async_add_pipeline_entities
from .models import EdgeInferenceConfigEntry
from .pipeline import CameraPipeline

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One image per pipeline."""
    async_add_pipeline_entities(
        entry, async_add_entities, per_pipeline=lambda pipeline: [DetectionImage(hass, pipeline)]
    )


class DetectionImage(PipelineEntity, ImageEntity):
    """The annotated JPEG of the latest detection."""

    _attr_content_type = "image/jpeg"
    _attr_translation_key = "last_detection"

    def __init__(self, hass: HomeAssistant, pipeline: CameraPipeline) -> None:
        """Both parents need their own init (the image one makes access tokens)."""
        PipelineEntity.__init__(self, pipeline, "last_detection")
        ImageEntity.__init__(self, hass)

    @property
    def image_last_updated(self) -> datetime | None:
        """When the pipeline last stored an image (the entity's state)."""
        return self.pipeline.image_updated

    async def async_image(self) -> bytes | None:
        """The latest annotated JPEG."""
        return self.pipeline.image
