"""AI Task entities on the server's LLM: generate data, structured by a JSON schema."""

from __future__ import annotations

from homeassistant.components import ai_task, conversation
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN, PRIORITY_BATCH, SUBENTRY_AI_TASK
from .llm_entity import EdgeInferenceLLMEntity
from .models import EdgeInferenceConfigEntry
from .tool_recovery import loads_repaired

PARALLEL_UPDATES = 0  # the server queues; HA need not


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One AI Task entity per AI Task subentry."""
    for subentry in entry.subentries.values():
        if subentry.subentry_type == SUBENTRY_AI_TASK:
            async_add_entities(
                [EdgeInferenceTaskEntity(entry, subentry)],
                config_subentry_id=subentry.subentry_id,
            )


class EdgeInferenceTaskEntity(ai_task.AITaskEntity, EdgeInferenceLLMEntity):
    """Generates text, or data of a given structure (llama-server holds it to the schema)."""

    _attr_supported_features = ai_task.AITaskEntityFeature.GENERATE_DATA
    priority = PRIORITY_BATCH  # spoken commands go first

    async def _async_generate_data(
        self, task: ai_task.GenDataTask, chat_log: conversation.ChatLog
    ) -> ai_task.GenDataTaskResult:
        """Answer the task; parse the answer when a structure was asked for."""
        await self._async_handle_chat_log(chat_log, task.name, task.structure)
        last = chat_log.content[-1]
        if not isinstance(last, conversation.AssistantContent):
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="no_answer")
        text = last.content or ""
        if task.structure is None:
            return ai_task.GenDataTaskResult(conversation_id=chat_log.conversation_id, data=text)
        data = loads_repaired(text)
        if data is None:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="structured_output_invalid",
                translation_placeholders={"text": text[:200]},
            )
        return ai_task.GenDataTaskResult(conversation_id=chat_log.conversation_id, data=data)
