"""Binary sensors: the server's connectivity, occupancy per watched label."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorEntity
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import EdgeInferenceEntity, PipelineLabelEntity, async_add_pipeline_entities
from .models import EdgeInferenceConfigEntry
from .sensor_pipeline_entities import SensorAnomalyBinarySensor, async_add_sensor_pipeline_entities

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the server's connectivity sensor and each pipeline's occupancy sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities([ConnectivitySensor(coordinator, "connectivity")])
    async_add_pipeline_entities(entry, async_add_entities, per_label=OccupancySensor)
    async_add_sensor_pipeline_entities(entry, async_add_entities, SensorAnomalyBinarySensor)


class ConnectivitySensor(EdgeInferenceEntity, BinarySensorEntity):
    """On while the server's MQTT status is `online`."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "connectivity"

    @property
    def available(self) -> bool:
        """Available while HA is connected to the broker: it reports the server's absence
        itself, but without the broker nobody knows."""
        return self.coordinator.mqtt_connected

    @property
    def is_on(self) -> bool:
        """Whether the server is online."""
        return self.coordinator.online


class OccupancySensor(PipelineLabelEntity, BinarySensorEntity):
    """On while the label is seen; off `clear_after` seconds after it was last seen."""

    _attr_device_class = BinarySensorDeviceClass.OCCUPANCY
    _attr_translation_key = "occupancy"

    @property
    def is_on(self) -> bool:
        """Whether the label is seen."""
        return self.pipeline.occupied.get(self.label, False)
