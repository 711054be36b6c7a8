"""Entities of the sensor pipelines, four per monitored sensor.

An anomaly binary sensor (problem), the anomaly score, the expected value in the sensor's unit
(interval and forecast as attributes) and an event entity that fires `anomaly` with its kind.
Each platform file adds its kind through `async_add_sensor_pipeline_entities`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorEntity
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.components.event import EventEntity
from homeassistant.components.sensor import SensorEntity, SensorStateClass
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .sensor_pipeline import EVENT_ANOMALY, SensorPipeline

if TYPE_CHECKING:
    from .models import EdgeInferenceConfigEntry


@callback
def async_add_sensor_pipeline_entities(
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    make: Callable[[SensorPipeline, str], Entity],
) -> None:
    """One entity of this platform per monitored sensor of every sensor pipeline."""
    for pipeline in entry.runtime_data.sensor_pipelines.values():
        async_add_entities(
            [make(pipeline, entity_id) for entity_id in pipeline.sensors],
            config_subentry_id=pipeline.subentry_id,
        )


class SensorPipelineEntity(Entity):
    """Keyed by subentry, kind and monitored entity; named after the monitored sensor."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_translation_key: str

    def __init__(self, pipeline: SensorPipeline, entity_id: str) -> None:
        """A service device per pipeline; the sensor's name is the translation placeholder."""
        self.pipeline = pipeline
        self.source = entity_id
        self._attr_unique_id = f"{pipeline.subentry_id}_{self._attr_translation_key}_{entity_id}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, pipeline.subentry_id)},
            name=pipeline.title,
            manufacturer="Edge Inference",
            model="Sensor pipeline",
            entry_type=DeviceEntryType.SERVICE,
        )
        source = pipeline.hass.states.get(entity_id)
        self._attr_translation_placeholders = {
            "sensor": source.name if source is not None else entity_id
        }

    @property
    def result(self) -> dict[str, Any] | None:
        """The latest result for the monitored sensor."""
        return self.pipeline.results.get(self.source)

    @property
    def available(self) -> bool:
        """Available once the model has an answer for the sensor."""
        return self.result is not None

    async def async_added_to_hass(self) -> None:
        """Follow the pipeline's results."""
        await super().async_added_to_hass()
        self.async_on_remove(self.pipeline.async_add_listener(self.async_write_ha_state))


class SensorAnomalyBinarySensor(SensorPipelineEntity, BinarySensorEntity):
    """On while the sensor's readings are anomalous."""

    _attr_device_class = BinarySensorDeviceClass.PROBLEM
    _attr_translation_key = "sensor_anomaly"

    @property
    def is_on(self) -> bool | None:
        """Whether the latest reading is anomalous."""
        return bool(self.result["anomaly"]) if self.result else None

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Kind, direction and score of the latest reading."""
        if not self.result:
            return None
        return {k: self.result.get(k) for k in ("kind", "direction", "score")}


class SensorAnomalyScore(SensorPipelineEntity, SensorEntity):
    """The anomaly score of the latest reading, 0 (usual) to 1."""

    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_translation_key = "anomaly_score"
    _attr_suggested_display_precision = 2

    @property
    def native_value(self) -> float | None:
        """The score."""
        return float(self.result["score"]) if self.result else None


class SensorExpectedValue(SensorPipelineEntity, SensorEntity):
    """What the model expected for the latest reading, in the sensor's unit."""

    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_translation_key = "expected_value"

    @property
    def native_unit_of_measurement(self) -> str | None:
        """The monitored sensor's unit."""
        return self.pipeline.units.get(self.source)

    @property
    def native_value(self) -> float | None:
        """The expected value."""
        return float(self.result["expected"]) if self.result else None

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The interval a reading is normal in, and the next hour's forecast."""
        if not self.result:
            return None
        return {
            "lower": self.result["lower"],
            "upper": self.result["upper"],
            "forecast": self.pipeline.forecasts.get(self.source, []),
        }


class SensorAnomalyEvent(SensorPipelineEntity, EventEntity):
    """Fires `anomaly` (kind, direction, score, value, expected) when an anomaly starts."""

    _attr_translation_key = "sensor_anomaly_event"

    def __init__(self, pipeline: SensorPipeline, entity_id: str) -> None:
        """One event type: `anomaly`."""
        super().__init__(pipeline, entity_id)
        self._attr_event_types = [EVENT_ANOMALY]

    @property
    def available(self) -> bool:
        """An event entity is there from the start."""
        return True

    async def async_added_to_hass(self) -> None:
        """Follow the pipeline's anomaly starts for this sensor."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.pipeline.async_add_anomaly_listener(self.source, self._on_anomaly)
        )

    @callback
    def _on_anomaly(self, result: dict[str, Any]) -> None:
        self._trigger_event(
            EVENT_ANOMALY,
            {k: result.get(k) for k in ("kind", "direction", "score", "v", "expected")},
        )
        self.async_write_ha_state()
