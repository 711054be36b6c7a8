"""A separate MQTT client that records what it sees, as Home Assistant would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    received: float

    @property
    def text(self) -> str:
        return self.payload.decode()


class MqttWatcher:
    def __init__(
        self,
        port: int,
        topic: str = "edge_inference/#",
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._topic = topic
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watcher-{time.time_ns()}"
        )
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file))
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.connect_async("127.0.0.1", port, keepalive=10)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )
            self._cond.notify_all()

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[Message], bool] = lambda _m: True,
        *,
        timeout: float = 15.0,
        after: float = 0.0,
    ) -> Message:
        """The first message on topic (received after `after`, monotonic) matching predicate."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages:
                    if msg.topic == topic and msg.received >= after and predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise TimeoutError(f"no matching message on {topic} in {timeout}s; saw {seen}")
                self._cond.wait(remaining)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
