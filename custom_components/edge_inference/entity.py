"""Base entities: one device per server, one per camera pipeline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from homeassistant.core import callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, MODE_SNAPSHOT
from .coordinator import EdgeInferenceCoordinator

if TYPE_CHECKING:
    from .models import EdgeInferenceConfigEntry
    from .pipeline import CameraPipeline


@callback
def async_add_pipeline_entities(
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    *,
    per_pipeline: Callable[[CameraPipeline], Sequence[Entity]] = lambda _: (),
    per_label: Callable[[CameraPipeline, str], Entity] | None = None,
) -> None:
    """Add a platform's entities for every pipeline, now and for pipelines added later."""

    @callback
    def _add(pipeline: CameraPipeline, new_labels: list[str] | None) -> None:
        entities = list(per_pipeline(pipeline)) if new_labels is None else []
        if per_label is not None:
            labels = pipeline.labels if new_labels is None else new_labels
            entities += [per_label(pipeline, label) for label in labels]
        if entities:
            async_add_entities(entities, config_subentry_id=pipeline.subentry_id)

    for pipeline in entry.runtime_data.pipelines.values():
        _add(pipeline, None)
    entry.runtime_data.pipeline_adders.append(_add)


def server_device_info(coordinator: EdgeInferenceCoordinator) -> DeviceInfo:
    """The server's device."""
    info = coordinator.data.info
    return DeviceInfo(
        identifiers={(DOMAIN, coordinator.server_id)},
        name=str(info.get("name") or coordinator.server_id),
        manufacturer="Edge Inference",
        model="Inference server",
        sw_version=str(info.get("version") or "") or None,
        configuration_url=coordinator.client.url,
    )


class EdgeInferenceEntity(CoordinatorEntity[EdgeInferenceCoordinator]):
    """An entity of the server's device; unavailable while the server is offline."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: EdgeInferenceCoordinator, key: str) -> None:
        """Unique id: server id and key."""
        super().__init__(coordinator)
        self._attr_unique_id = f"{coordinator.server_id}_{key}"
        self._attr_device_info = server_device_info(coordinator)

    @property
    def available(self) -> bool:
        """Available while the server is online and HA is connected to the broker."""
        return super().available and self.coordinator.online and self.coordinator.mqtt_connected


class PipelineEntity(EdgeInferenceEntity):
    """An entity of a camera pipeline's device (one per subentry)."""

    def __init__(self, pipeline: CameraPipeline, key: str) -> None:
        """Unique id: subentry id and key; a service device that hangs off the server's."""
        super().__init__(pipeline.coordinator, key)
        self.pipeline = pipeline
        self._attr_unique_id = f"{pipeline.subentry_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, pipeline.subentry_id)},
            name=pipeline.title,
            manufacturer="Edge Inference",
            model="Camera pipeline",
            entry_type=DeviceEntryType.SERVICE,
            via_device_id=pipeline.coordinator.server_device_id,
        )

    @property
    def available(self) -> bool:
        """Stream mode lives on pushed state; snapshot mode polls over HTTP and does not
        need the broker (the server's last known status still counts)."""
        if self.pipeline.mode == MODE_SNAPSHOT:
            # Without the broker the server's status is unknown (even a last `offline`).
            return self.coordinator.last_update_success and (
                self.coordinator.online or not self.coordinator.mqtt_connected
            )
        return super().available

    async def async_added_to_hass(self) -> None:
        """Follow the pipeline's state too."""
        await super().async_added_to_hass()
        self.async_on_remove(self.pipeline.async_add_listener(self._handle_pipeline_update))

    @callback
    def _handle_pipeline_update(self) -> None:
        self.async_write_ha_state()


class PipelineLabelEntity(PipelineEntity):
    """One entity per watched label; the key is `<translation_key>_<label>`."""

    _attr_translation_key: str

    def __init__(self, pipeline: CameraPipeline, label: str) -> None:
        """The label is also the name's translation placeholder."""
        super().__init__(pipeline, f"{self._attr_translation_key}_{label}")
        self.label = label
        self._attr_translation_placeholders = {"label": label}

    @property
    def available(self) -> bool:
        """Counts and occupancy are never shown stale: unavailable while detection fails or
        the server's stream source is stalled or broken (they come back by themselves)."""
        return super().available and self.pipeline.healthy

    @callback
    def _handle_pipeline_update(self) -> None:
        if self.label not in self.pipeline.labels:
            # The label left the pipeline: its entity leaves the registry too.
            er.async_get(self.hass).async_remove(self.entity_id)
            return
        super()._handle_pipeline_update()
