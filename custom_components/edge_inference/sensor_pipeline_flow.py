"""Subentry flow: one sensor pipeline (numeric sensors to watch, days of history to warm up)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import probatio as vol
from homeassistant.components.sensor import ATTR_STATE_CLASS
from homeassistant.components.sensor.const import DOMAIN as SENSOR_DOMAIN
from homeassistant.config_entries import ConfigSubentryFlow, SubentryFlowResult
from homeassistant.const import CONF_NAME
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
)

from .sensor_pipeline import (
    CONF_SCORING_MODEL,
    CONF_SENSORS,
    CONF_WARMUP_DAYS,
    DEFAULT_WARMUP_DAYS,
    numeric,
)

DEFAULT_NAME = "Sensor anomalies"


def announced_sensor_models(info: Mapping[str, Any]) -> list[str]:
    """The server's sensor scoring models (ONNX in its model repository), from the announce."""
    sensors = (info.get("capabilities") or {}).get("sensors") or {}
    return [str(name) for name in sensors.get("models") or [] if isinstance(name, str)]


def _schema(defaults: dict[str, Any], models: list[str]) -> vol.Schema:
    fields: dict[Any, Any] = {
        vol.Required(CONF_NAME, default=defaults.get(CONF_NAME, DEFAULT_NAME)): TextSelector(),
        vol.Required(CONF_SENSORS, default=defaults.get(CONF_SENSORS, [])): EntitySelector(
            EntitySelectorConfig(domain=SENSOR_DOMAIN, multiple=True)
        ),
        vol.Required(
            CONF_WARMUP_DAYS, default=defaults.get(CONF_WARMUP_DAYS, DEFAULT_WARMUP_DAYS)
        ): NumberSelector(
            NumberSelectorConfig(
                min=0, max=60, step=1, unit_of_measurement="d", mode=NumberSelectorMode.BOX
            )
        ),
    }
    if models:  # only offered when the server has a model to offer
        fields[
            vol.Optional(
                CONF_SCORING_MODEL,
                description={"suggested_value": defaults.get(CONF_SCORING_MODEL)},
            )
        ] = SelectSelector(SelectSelectorConfig(options=models))
    return vol.Schema(fields)


class SensorPipelineSubentryFlow(ConfigSubentryFlow):
    """Add or change a sensor pipeline."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Pick the sensors."""
        errors = self._validate(user_input) if user_input is not None else {}
        if user_input is not None and not errors:
            name = user_input.pop(CONF_NAME)
            return self.async_create_entry(title=name, data=user_input)
        return self.async_show_form(
            step_id="user", data_schema=_schema(user_input or {}, self._models()), errors=errors
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change the sensors or the warm-up."""
        subentry = self._get_reconfigure_subentry()
        errors = self._validate(user_input) if user_input is not None else {}
        if user_input is not None and not errors:
            name = user_input.pop(CONF_NAME)
            return self.async_update_and_abort(
                self._get_entry(), subentry, title=name, data=user_input
            )
        defaults = user_input or {CONF_NAME: subentry.title, **subentry.data}
        return self.async_show_form(
            step_id="reconfigure", data_schema=_schema(defaults, self._models()), errors=errors
        )

    def _models(self) -> list[str]:
        runtime = getattr(self._get_entry(), "runtime_data", None)
        return announced_sensor_models(runtime.coordinator.data.info) if runtime else []

    def _validate(self, user_input: dict[str, Any]) -> dict[str, str]:
        """Numeric sensors only: a state class, or a state that reads as a number."""
        sensors = user_input.get(CONF_SENSORS) or []
        if not sensors:
            return {CONF_SENSORS: "no_sensors"}
        for entity_id in sensors:
            state = self.hass.states.get(entity_id)
            if state is None or (
                state.attributes.get(ATTR_STATE_CLASS) is None and numeric(state) is None
            ):
                return {CONF_SENSORS: "not_numeric"}
        return {}
