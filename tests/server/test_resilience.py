"""The server outlives its parts' failures: a broker outage, a failing stats tick, a failing
shutdown step. Real Mosquitto, the real Server and model; faults injected where noted."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from inference_server import server as server_module
from inference_server.config import Settings
from inference_server.mqtt import MAX_QUEUED, MqttPresence
from inference_server.server import Server
from tests.helpers.broker import MosquittoBroker
from tests.helpers.mqtt_watcher import MqttWatcher


def wait(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_events_queued_during_a_broker_outage_are_bounded(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    settings = Settings(
        token="test-token", mqtt_host="127.0.0.1", mqtt_port=broker.port, data_dir=tmp_path
    )
    presence = MqttPresence(settings, "queue-test")
    presence.start()
    try:
        wait(presence.connected.is_set)
        broker.stop()
        wait(lambda: not presence.connected.is_set())
        for i in range(1000):  # a busy driveway during a long outage
            presence.publish("events", {"i": i}, qos=1)
        assert presence.dropped == 1000 - MAX_QUEUED
        broker.start()
        watcher = MqttWatcher(broker.port, "edge_inference/queue-test/events")
        try:
            wait(presence.connected.is_set, timeout=40)
            time.sleep(3)  # whatever was queued has arrived by now
            received = [m for m in watcher.messages if m.topic.endswith("/events")]
            assert 0 < len(received) <= MAX_QUEUED  # before: all 1,000 flooded in
        finally:
            watcher.close()
    finally:
        presence.stop(timeout=1)
        broker.stop()


async def test_the_stats_loop_survives_a_failing_tick_and_stop_always_completes(
    tmp_path: Path, model_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No speech model: its loader thread, cut off at interpreter exit, aborts the test process.
    settings = Settings(token="test-token", data_dir=tmp_path, model_repo=model_repo)
    if "speech_model_dir" in Settings.__dataclass_fields__:
        settings = dataclasses.replace(settings, speech_model_dir=tmp_path)
    server = Server(settings)
    monkeypatch.setattr(server_module, "STATS_TICK_S", 0.05)
    ticks = 0
    recovered = asyncio.Event()

    def flaky_depths() -> dict[str, int]:  # fault injection: the first two ticks fail
        nonlocal ticks
        ticks += 1
        if ticks <= 2:
            raise RuntimeError("injected")
        if ticks >= 5:
            recovered.set()
        return {}

    monkeypatch.setattr(server.vision, "queue_depths", flaky_depths)
    await server.start()
    try:
        async with asyncio.timeout(10):
            await recovered.wait()  # before: the loop died at the first failing tick
        assert server.backend.ready
    finally:

        async def failing_stop() -> None:  # fault injection: one shutdown step fails
            raise RuntimeError("injected")

        monkeypatch.setattr(server.cameras, "stop", failing_stop)
        async with asyncio.timeout(30):
            await server.stop()
    assert not server.backend.ready  # the steps after the failing one still ran
