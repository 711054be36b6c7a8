"""MQTT presence with paho-mqtt: retained announce and status, last will, events and stats.

paho's network thread owns the connection: it reconnects with backoff (1 s up to 30 s) and
`on_connect` re-publishes the announce and `online`, so a restarted broker (which lost its
retained messages when it has no persistence) learns about us again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import Settings

_LOGGER = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
# QoS 1 messages paho keeps while the broker is away; past that new ones are dropped, so a long
# outage does not grow memory or flood Home Assistant with stale events on reconnect.
MAX_QUEUED = 200


class MqttPresence:
    def __init__(self, settings: Settings, server_id: str) -> None:
        self.settings = settings
        self.base = f"{settings.mqtt_base_topic.strip('/')}/{server_id}"
        self._announce: bytes = b"{}"
        self._lock = threading.Lock()
        self.connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"edge-inference-{server_id}", clean_session=True
        )
        client.will_set(self.topic("status"), OFFLINE, qos=1, retain=True)
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password or None)
        if settings.mqtt_tls:
            client.tls_set(
                ca_certs=settings.mqtt_ca_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(MAX_QUEUED)
        self.dropped = 0  # messages refused by the full offline queue
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    def start(self) -> None:
        # connect_async + loop_start: the network thread keeps retrying, even the first connect.
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()

    def stop(self, timeout: float = 3.0) -> None:
        if self.connected.is_set():
            info = self._client.publish(self.topic("status"), OFFLINE, qos=1, retain=True)
            # broker gone: the last will says offline for us
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.connected.clear()  # a disconnect we asked for is not worth a warning
        self._client.disconnect()
        self._client.loop_stop()

    def set_announce(self, payload: dict[str, Any]) -> None:
        """Keep the announce for every reconnect; publish it now when connected."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            changed = data != self._announce
            self._announce = data
        if changed and self.connected.is_set():
            self._client.publish(self.topic("announce"), data, qos=1, retain=True)

    def publish(
        self, suffix: str, payload: dict[str, Any] | None, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Thread-safe, non-blocking; dropped (QoS 0) or queued (QoS 1, up to MAX_QUEUED) while
        disconnected. payload None sends an empty message (clears a retained topic)."""
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":"))
        info = self._client.publish(self.topic(suffix), data, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _LOGGER.warning("MQTT offline queue full: %d messages dropped", self.dropped)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            _LOGGER.warning("MQTT broker refused the connection: %s", reason)
            return
        with self._lock:
            announce = self._announce
        client.publish(self.topic("announce"), announce, qos=1, retain=True)
        client.publish(self.topic("status"), ONLINE, qos=1, retain=True)
        if not self.connected.is_set():
            _LOGGER.info(
                "Connected to MQTT %s:%s", self.settings.mqtt_host, self.settings.mqtt_port
            )
        self.connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if self.connected.is_set():
            _LOGGER.warning("Lost MQTT connection (%s); reconnecting", reason)
        self.connected.clear()
