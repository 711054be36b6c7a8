"""Subentry flow: one camera pipeline (camera, labels, min score, mode, rates)."""

from __future__ import annotations

from typing import Any

import probatio as vol
from homeassistant.components.camera.const import DOMAIN as CAMERA_DOMAIN
from homeassistant.config_entries import ConfigEntryState, ConfigSubentryFlow, SubentryFlowResult
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)

from .const import (
    CONF_CAMERA_ENTITY_ID,
    CONF_CLEAR_AFTER,
    CONF_FPS,
    CONF_INTERVAL,
    CONF_LABELS,
    CONF_MIN_SCORE,
    CONF_MODE,
    CONF_MOTION_PERCENT,
    DEFAULT_CLEAR_AFTER,
    DEFAULT_FPS,
    DEFAULT_INTERVAL,
    DEFAULT_LABELS,
    DEFAULT_MIN_SCORE,
    DEFAULT_MOTION_PERCENT,
    MODE_SNAPSHOT,
    MODE_STREAM,
)
from .pipeline import camera_entity_id, camera_ref


def _schema(labels: list[str], *, with_camera: bool) -> vol.Schema:
    fields: dict[Any, Any] = {}
    if with_camera:
        fields[vol.Required(CONF_CAMERA_ENTITY_ID)] = EntitySelector(
            EntitySelectorConfig(domain=CAMERA_DOMAIN)
        )
    fields |= {
        vol.Required(CONF_LABELS): SelectSelector(
            SelectSelectorConfig(options=labels, multiple=True, mode=SelectSelectorMode.DROPDOWN)
        ),
        vol.Required(CONF_MIN_SCORE): NumberSelector(
            NumberSelectorConfig(min=0.05, max=0.95, step=0.05, mode=NumberSelectorMode.SLIDER)
        ),
        vol.Required(CONF_MODE): SelectSelector(
            SelectSelectorConfig(
                options=[MODE_SNAPSHOT, MODE_STREAM],
                translation_key=CONF_MODE,
                mode=SelectSelectorMode.LIST,
            )
        ),
        vol.Required(CONF_INTERVAL): NumberSelector(
            NumberSelectorConfig(
                min=1, max=3600, step=1, unit_of_measurement="s", mode=NumberSelectorMode.BOX
            )
        ),
        vol.Required(CONF_FPS): NumberSelector(
            NumberSelectorConfig(min=0.5, max=10, step=0.5, mode=NumberSelectorMode.BOX)
        ),
        # Optional: pipelines made before it existed keep working unchanged.
        vol.Optional(CONF_MOTION_PERCENT, default=DEFAULT_MOTION_PERCENT): NumberSelector(
            NumberSelectorConfig(
                min=0, max=10, step=0.05, unit_of_measurement="%", mode=NumberSelectorMode.BOX
            )
        ),
        vol.Required(CONF_CLEAR_AFTER): NumberSelector(
            NumberSelectorConfig(
                min=0, max=3600, step=1, unit_of_measurement="s", mode=NumberSelectorMode.BOX
            )
        ),
    }
    return vol.Schema(fields)


DEFAULTS = {
    CONF_MIN_SCORE: DEFAULT_MIN_SCORE,
    CONF_MODE: MODE_SNAPSHOT,
    CONF_INTERVAL: DEFAULT_INTERVAL,
    CONF_FPS: DEFAULT_FPS,
    CONF_MOTION_PERCENT: DEFAULT_MOTION_PERCENT,
    CONF_CLEAR_AFTER: DEFAULT_CLEAR_AFTER,
}


class CameraSubentryFlow(ConfigSubentryFlow):
    """Add or change a camera pipeline."""

    def _labels(self) -> list[str] | None:
        entry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED:
            return None
        return list(entry.runtime_data.coordinator.data.vision_labels)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Choose a camera and what to watch."""
        labels = self._labels()
        if labels is None:
            return self.async_abort(reason="entry_not_loaded")
        if not labels:
            return self.async_abort(reason="no_vision")
        errors: dict[str, str] = {}
        if user_input is not None:
            camera = user_input[CONF_CAMERA_ENTITY_ID]
            if any(
                camera_entity_id(self.hass, sub.data.get(CONF_CAMERA_ENTITY_ID, "")) == camera
                for sub in self._get_entry().subentries.values()
            ):
                return self.async_abort(reason="already_configured")
            if not user_input[CONF_LABELS]:
                errors[CONF_LABELS] = "no_labels"
            else:
                state = self.hass.states.get(camera)
                title = state.name if state else camera
                # Kept by registry id: the pipeline follows a renamed camera.
                data = {**user_input, CONF_CAMERA_ENTITY_ID: camera_ref(self.hass, camera)}
                return self.async_create_entry(title=title, data=data, unique_id=camera)
        suggested = {**DEFAULTS, CONF_LABELS: [x for x in DEFAULT_LABELS if x in labels]}
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                _schema(labels, with_camera=True), user_input or suggested
            ),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change what a pipeline watches and how."""
        labels = self._labels()
        if labels is None:
            return self.async_abort(reason="entry_not_loaded")
        subentry = self._get_reconfigure_subentry()
        errors: dict[str, str] = {}
        if user_input is not None:
            if not user_input[CONF_LABELS]:
                errors[CONF_LABELS] = "no_labels"
            else:
                return self.async_update_and_abort(
                    self._get_entry(), subentry, data_updates=user_input
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _schema(labels, with_camera=False), user_input or {**DEFAULTS, **subentry.data}
            ),
            errors=errors,
        )
