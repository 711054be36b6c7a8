"""Subentry flows for the LLM agents: a conversation agent or an AI Task entity.

The models offered are those the server announces (capabilities.llm.models); the settings are
the agent's: prompt, the HA LLM APIs it may use, how much history, temperature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import probatio as vol
from homeassistant.config_entries import ConfigEntryState, ConfigSubentryFlow, SubentryFlowResult
from homeassistant.const import CONF_LLM_HASS_API, CONF_NAME, CONF_PROMPT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TemplateSelector,
)

from .const import (
    CONF_CHAT_MODEL,
    CONF_MAX_HISTORY,
    CONF_TEMPERATURE,
    DEFAULT_MAX_HISTORY,
    DEFAULT_TEMPERATURE,
    SUBENTRY_CONVERSATION,
)

DEFAULT_NAMES = {SUBENTRY_CONVERSATION: "Local assistant", "ai_task_data": "Local AI Task"}


def announced_llm_models(info: Mapping[str, Any]) -> list[str]:
    """The model names in the server's `llm` capability."""
    capability = (info.get("capabilities") or {}).get("llm") or {}
    return [
        str(model["name"])
        for model in capability.get("models") or []
        if isinstance(model, dict) and model.get("name")
    ]


def _schema(
    hass: HomeAssistant, kind: str, models: list[str], options: Mapping[str, Any], *, new: bool
) -> vol.Schema:
    fields: dict[Any, Any] = {}
    if new:
        fields[vol.Required(CONF_NAME, default=DEFAULT_NAMES[kind])] = str
    fields[
        vol.Required(CONF_CHAT_MODEL, description={"suggested_value": options.get(CONF_CHAT_MODEL)})
    ] = SelectSelector(SelectSelectorConfig(options=models, custom_value=True))
    if kind == SUBENTRY_CONVERSATION:
        apis = llm.async_get_apis(hass)
        valid = {api.id for api in apis}
        fields |= {
            vol.Optional(
                CONF_PROMPT,
                description={
                    "suggested_value": options.get(CONF_PROMPT, llm.DEFAULT_INSTRUCTIONS_PROMPT)
                },
            ): TemplateSelector(),
            vol.Optional(
                CONF_LLM_HASS_API,
                description={
                    "suggested_value": [
                        a
                        for a in options.get(CONF_LLM_HASS_API, [llm.LLM_API_ASSIST])
                        if a in valid
                    ]
                },
            ): SelectSelector(
                SelectSelectorConfig(
                    options=[SelectOptionDict(label=api.name, value=api.id) for api in apis],
                    multiple=True,
                )
            ),
            vol.Optional(
                CONF_MAX_HISTORY,
                description={"suggested_value": options.get(CONF_MAX_HISTORY, DEFAULT_MAX_HISTORY)},
            ): NumberSelector(
                NumberSelectorConfig(min=1, max=100, step=1, mode=NumberSelectorMode.BOX)
            ),
        }
    fields[
        vol.Optional(
            CONF_TEMPERATURE,
            description={"suggested_value": options.get(CONF_TEMPERATURE, DEFAULT_TEMPERATURE)},
        )
    ] = NumberSelector(NumberSelectorConfig(min=0, max=2, step=0.05))
    return vol.Schema(fields)


class LlmAgentSubentryFlow(ConfigSubentryFlow):
    """Add or change a conversation agent or an AI Task entity."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Choose a model and the agent's settings."""
        return await self._async_options(user_input, new=True)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change the agent's settings."""
        return await self._async_options(user_input, new=False)

    async def _async_options(
        self, user_input: dict[str, Any] | None, *, new: bool
    ) -> SubentryFlowResult:
        entry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="entry_not_loaded")
        models = announced_llm_models(entry.runtime_data.coordinator.data.info)
        if not models:
            return self.async_abort(reason="no_llm")
        if user_input is not None:
            if new:
                name = user_input.pop(CONF_NAME)
                return self.async_create_entry(title=name, data=user_input)
            return self.async_update_and_abort(
                entry, self._get_reconfigure_subentry(), data=user_input
            )
        options = {} if new else dict(self._get_reconfigure_subentry().data)
        return self.async_show_form(
            step_id="user" if new else "reconfigure",
            data_schema=_schema(self.hass, self._subentry_type, models, options, new=new),
        )
