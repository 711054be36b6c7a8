"""Diagnostics: the entry (token redacted), the server's state and each pipeline."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_TOKEN
from homeassistant.core import HomeAssistant

from .models import EdgeInferenceConfigEntry

TO_REDACT = {CONF_API_TOKEN, "token", "password"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EdgeInferenceConfigEntry
) -> dict[str, Any]:
    """Everything useful to debug a server and its pipelines, without secrets."""
    data = entry.runtime_data
    state = data.coordinator.data
    return async_redact_data(
        {
            "entry": entry.as_dict(),
            "server": {
                "online": state.online,
                "info": state.info,
                "stats": state.stats,
            },
            "pipelines": {
                subentry_id: pipeline.diagnostics()
                for subentry_id, pipeline in data.pipelines.items()
            },
        },
        TO_REDACT,
    )
