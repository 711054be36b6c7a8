"""Sensors: the server's latency, queue depth, models and backends; counts per label."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import EdgeInferenceCoordinator, ServerState
from .entity import EdgeInferenceEntity, PipelineLabelEntity, async_add_pipeline_entities
from .models import EdgeInferenceConfigEntry
from .sensor_pipeline_entities import (
    SensorAnomalyScore,
    SensorExpectedValue,
    async_add_sensor_pipeline_entities,
)

PARALLEL_UPDATES = 0

BACKENDS_READY = "ready"
BACKENDS_DEGRADED = "degraded"
BACKENDS_DOWN = "unavailable"


def _latency(state: ServerState) -> float | None:
    """p50 latency of the default vision model, else of the first reported pipeline."""
    latency = (state.stats or {}).get("latency_ms")
    if not isinstance(latency, dict) or not latency:
        return None
    key = f"vision/{state.vision.get('default_model')}"
    values = latency.get(key) or next(iter(latency.values()))
    p50 = values.get("p50") if isinstance(values, dict) else None
    return float(p50) if isinstance(p50, int | float) else None


def _queue_depth(state: ServerState) -> int | None:
    depth = (state.stats or {}).get("queue_depth")
    if not isinstance(depth, dict):
        return None
    return sum(int(v) for v in depth.values() if isinstance(v, int | float))


def _backends(state: ServerState) -> str | None:
    ready = [bool(b.get("ready")) for b in state.backends.values() if isinstance(b, dict)]
    if not ready:
        return None
    if all(ready):
        return BACKENDS_READY
    return BACKENDS_DEGRADED if any(ready) else BACKENDS_DOWN


@dataclass(frozen=True, kw_only=True)
class ServerSensorDescription(SensorEntityDescription):
    """A server sensor and how it reads the server's state."""

    value_fn: Callable[[ServerState], Any]
    attrs_fn: Callable[[ServerState], dict[str, Any]] | None = None


SERVER_SENSORS = (
    ServerSensorDescription(
        key="inference_latency",
        translation_key="inference_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_latency,
    ),
    ServerSensorDescription(
        key="queue_depth",
        translation_key="queue_depth",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_queue_depth,
    ),
    ServerSensorDescription(
        key="loaded_models",
        translation_key="loaded_models",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda state: len(state.models),
        attrs_fn=lambda state: {"models": state.models},
    ),
    ServerSensorDescription(
        key="backends",
        translation_key="backends",
        device_class=SensorDeviceClass.ENUM,
        options=[BACKENDS_READY, BACKENDS_DEGRADED, BACKENDS_DOWN],
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_backends,
        attrs_fn=lambda state: {
            name: bool(b.get("ready")) for name, b in state.backends.items() if isinstance(b, dict)
        },
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the server's sensors and each pipeline's count sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(ServerSensor(coordinator, description) for description in SERVER_SENSORS)
    async_add_pipeline_entities(entry, async_add_entities, per_label=CountSensor)
    async_add_sensor_pipeline_entities(entry, async_add_entities, SensorAnomalyScore)
    async_add_sensor_pipeline_entities(entry, async_add_entities, SensorExpectedValue)


class ServerSensor(EdgeInferenceEntity, SensorEntity):
    """A diagnostic sensor of the server."""

    entity_description: ServerSensorDescription

    def __init__(
        self, coordinator: EdgeInferenceCoordinator, description: ServerSensorDescription
    ) -> None:
        """Keyed by the description."""
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> Any:
        """Read the server's state."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Model names, backend readiness."""
        if self.entity_description.attrs_fn is None:
            return None
        return self.entity_description.attrs_fn(self.coordinator.data)


class CountSensor(PipelineLabelEntity, SensorEntity):
    """How many objects with the label the camera sees."""

    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_translation_key = "count"

    @property
    def native_value(self) -> int:
        """The latest count."""
        return self.pipeline.counts.get(self.label, 0)
