"""Conversation agents (Assist) on the server's LLM: one per conversation subentry."""

from __future__ import annotations

from typing import Literal

from homeassistant.components import conversation
from homeassistant.components.conversation.models import AbstractConversationAgent
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT, MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm
from homeassistant.helpers.chat_session import async_get_chat_session
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .client import EdgeInferenceError
from .const import DOMAIN, LOGGER, PRIORITY_VOICE, SUBENTRY_CONVERSATION
from .llm_entity import EdgeInferenceLLMEntity, chat_messages, format_tool
from .models import EdgeInferenceConfigEntry

PARALLEL_UPDATES = 0  # the server queues; HA need not


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One agent per conversation subentry."""
    for subentry in entry.subentries.values():
        if subentry.subentry_type == SUBENTRY_CONVERSATION:
            async_add_entities(
                [EdgeInferenceConversationEntity(entry, subentry)],
                config_subentry_id=subentry.subentry_id,
            )


class EdgeInferenceConversationEntity(
    conversation.ConversationEntity,
    AbstractConversationAgent,
    EdgeInferenceLLMEntity,
):
    """Answers Assist and controls the home through HA's LLM API."""

    _attr_supports_streaming = True  # TTS starts on the first sentence
    priority = PRIORITY_VOICE

    def __init__(self, entry: EdgeInferenceConfigEntry, subentry: ConfigSubentry) -> None:
        """Control the home when an LLM API is chosen."""
        super().__init__(entry, subentry)
        if subentry.data.get(CONF_LLM_HASS_API):
            self._attr_supported_features = conversation.ConversationEntityFeature.CONTROL

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        """Whatever the model speaks."""
        return MATCH_ALL

    async def async_added_to_hass(self) -> None:
        """Register as an agent."""
        await super().async_added_to_hass()
        conversation.async_set_agent(self.hass, self.entry, self)

    async def async_will_remove_from_hass(self) -> None:
        """Unregister."""
        conversation.async_unset_agent(self.hass, self.entry)
        await super().async_will_remove_from_hass()

    async def _async_handle_message(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> conversation.ConversationResult:
        """Give the model the home (prompt and tools), answer, act."""
        options = self.subentry.data
        try:
            await chat_log.async_provide_llm_data(
                user_input.as_llm_context(DOMAIN),
                options.get(CONF_LLM_HASS_API),
                options.get(CONF_PROMPT),
                user_input.extra_system_prompt,
            )
        except conversation.ConverseError as err:
            return err.as_conversation_result()
        await self._async_handle_chat_log(chat_log, language=user_input.language)
        return conversation.async_get_result_from_chat_log(user_input, chat_log)

    async def async_prepare(self, language: str | None = None) -> None:
        """Assist is listening: have llama-server read the system prompt and tools now.

        They are the same in the request that follows (the prompt is kept static), so the
        server's prompt cache makes its first token come sooner.
        """
        options = self.subentry.data
        with (
            async_get_chat_session(self.hass) as session,
            conversation.async_get_chat_log(self.hass, session) as chat_log,
        ):
            try:
                await chat_log.async_provide_llm_data(
                    llm.LLMContext(
                        platform=DOMAIN,
                        context=None,
                        language=language,
                        assistant=conversation.DOMAIN,
                        device_id=None,
                    ),
                    options.get(CONF_LLM_HASS_API),
                    options.get(CONF_PROMPT),
                    None,
                )
            except conversation.ConverseError:
                return
            api = chat_log.llm_api
            tools = [format_tool(tool, api.custom_serializer) for tool in api.tools] if api else []
            messages = chat_messages(chat_log.content[:1], 0)
        body = self.request_body([*messages, {"role": "user", "content": "."}], tools)
        body["max_tokens"] = 1
        try:
            await self.client.async_chat(body, priority=self.priority)
        except EdgeInferenceError as err:  # the request that follows will say what is wrong
            LOGGER.debug("LLM warm-up failed: %s", err)
