"""MQTT subscriptions to a server's topics (docs/protocol.md), decoded once here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback

from .const import LOGGER

type JsonCallback = Callable[[dict[str, Any]], None]
type TextCallback = Callable[[str], None]


async def async_subscribe_json(
    hass: HomeAssistant, topic: str, on_message: JsonCallback, qos: int = 1
) -> CALLBACK_TYPE:
    """Subscribe to a topic whose payloads are JSON objects; others are dropped."""

    @callback
    def _received(msg: mqtt.ReceiveMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except (ValueError, TypeError):
            LOGGER.debug("Ignoring a payload that is not JSON on %s", msg.topic)
            return
        if not isinstance(payload, dict):
            LOGGER.debug("Ignoring a payload that is not a JSON object on %s", msg.topic)
            return
        on_message(payload)

    return await mqtt.async_subscribe(hass, topic, _received, qos=qos)


async def async_subscribe_text(
    hass: HomeAssistant, topic: str, on_message: TextCallback, qos: int = 1
) -> CALLBACK_TYPE:
    """Subscribe to a topic with plain text payloads (the status topic)."""

    @callback
    def _received(msg: mqtt.ReceiveMessage) -> None:
        payload = msg.payload
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        on_message(str(payload).strip())

    return await mqtt.async_subscribe(hass, topic, _received, qos=qos)
