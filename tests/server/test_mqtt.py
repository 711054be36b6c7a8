"""MQTT presence on a real Mosquitto, seen by a separate client."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.helpers.broker import MosquittoBroker
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.helpers.server_process import ServerProcess

BASE = "edge_inference/test-server"


def test_announce_and_status_are_retained(server: ServerProcess, broker: MosquittoBroker) -> None:
    # A client that connects after the server still gets both: they are retained.
    late = MqttWatcher(broker.port)
    try:
        announce = late.wait_for(f"{BASE}/announce")
        status = late.wait_for(f"{BASE}/status")
    finally:
        late.close()
    assert announce.retain
    assert status.retain
    assert status.text == "online"
    payload = json.loads(announce.payload)
    assert payload["protocol"] == 1
    assert payload["server_id"] == "test-server"
    assert payload["api"]["url"] == server.url
    assert payload["capabilities"]["vision"]["default_model"] == "yolox-nano"
    assert payload["capabilities"]["vision"]["camera_options"] == [
        "motion_threshold",
        "detect_source",
    ]
    assert payload["backends"]["local"]["ready"] is True
    assert server.token not in announce.text  # no secrets in the announce


def test_broker_restart_leads_to_a_new_announce(
    server: ServerProcess, broker: MosquittoBroker, watcher: MqttWatcher
) -> None:
    watcher.wait_for(f"{BASE}/announce")
    broker.stop()  # no persistence: the restarted broker has forgotten every retained message
    restarted = time.monotonic()
    broker.start()
    again = watcher.wait_for(f"{BASE}/announce", after=restarted, timeout=45)
    assert json.loads(again.payload)["server_id"] == "test-server"
    # The stopping broker may hand the watcher the server's will ("offline") just after
    # `restarted` is taken, so wait for "online"; what a client sees now is the retained one.
    watcher.wait_for(f"{BASE}/status", lambda m: m.text == "online", after=restarted)
    late = MqttWatcher(broker.port)
    try:
        assert late.wait_for(f"{BASE}/status").text == "online"
    finally:
        late.close()


def test_sigkill_shows_offline_through_the_last_will(
    server: ServerProcess, watcher: MqttWatcher
) -> None:
    watcher.wait_for(f"{BASE}/status", lambda m: m.text == "online")
    killed = time.monotonic()
    server.kill()
    offline = watcher.wait_for(
        f"{BASE}/status", lambda m: m.text == "offline", after=killed, timeout=30
    )
    assert offline.received - killed < 30


def test_clean_stop_publishes_offline_then_restart_online(
    server: ServerProcess, watcher: MqttWatcher
) -> None:
    watcher.wait_for(f"{BASE}/status", lambda m: m.text == "online")
    stopped = time.monotonic()
    server.stop()
    watcher.wait_for(f"{BASE}/status", lambda m: m.text == "offline", after=stopped, timeout=10)
    started = time.monotonic()
    server.start()
    watcher.wait_for(f"{BASE}/status", lambda m: m.text == "online", after=started)


def test_stats_are_published(
    tmp_path: Path, broker: MosquittoBroker, watcher: MqttWatcher, model_repo: Path
) -> None:
    proc = ServerProcess(
        tmp_path / "s",
        mqtt_port=broker.port,
        model_repo=model_repo,
        extra_args=["--stats-interval", "1"],
    )
    proc.start()
    try:
        first = watcher.wait_for(f"{BASE}/stats")
        stats = json.loads(first.payload)
        assert stats["backends"]["local"]["ready"] is True
        assert "uptime_s" in stats
        second = watcher.wait_for(f"{BASE}/stats", after=first.received + 0.01, timeout=10)
        assert json.loads(second.payload)["uptime_s"] >= stats["uptime_s"]
    finally:
        proc.stop()


def test_username_and_password(tmp_path: Path, model_repo: Path) -> None:
    broker = MosquittoBroker(tmp_path / "auth-broker", users={"edge": "s3cret-pass"})
    broker.start()
    watcher = MqttWatcher(broker.port, username="edge", password="s3cret-pass")
    good = ServerProcess(
        tmp_path / "good",
        mqtt_port=broker.port,
        model_repo=model_repo,
        extra_args=["--mqtt-username", "edge", "--mqtt-password", "s3cret-pass"],
    )
    bad = ServerProcess(
        tmp_path / "bad",
        mqtt_port=broker.port,
        model_repo=model_repo,
        server_id="bad-creds",
        extra_args=["--mqtt-username", "edge", "--mqtt-password", "wrong"],
    )
    try:
        good.start()
        assert watcher.wait_for(f"{BASE}/status").text == "online"
        bad.start()  # a refused login is logged; HTTP keeps serving
        time.sleep(2)
        assert "refused" in bad.log()
        assert not any(m.topic.startswith("edge_inference/bad-creds/") for m in watcher.messages)
    finally:
        good.stop()
        bad.stop()
        watcher.close()
        broker.stop()


def test_tls_with_a_private_ca(tmp_path: Path, model_repo: Path) -> None:
    broker = MosquittoBroker(tmp_path / "tls-broker", tls=True)
    broker.start()
    trusted = ServerProcess(
        tmp_path / "trusted",
        mqtt_port=broker.port,
        model_repo=model_repo,
        extra_args=["--mqtt-tls", "true", "--mqtt-ca-file", str(broker.ca_file)],
    )
    untrusted = ServerProcess(  # the system CAs do not know our test CA
        tmp_path / "untrusted",
        mqtt_port=broker.port,
        model_repo=model_repo,
        server_id="untrusted",
        extra_args=["--mqtt-tls", "true"],
    )
    watcher = MqttWatcher(broker.port, ca_file=broker.ca_file)
    try:
        trusted.start()
        untrusted.start()
        assert watcher.wait_for(f"{BASE}/status").text == "online"
        time.sleep(2)
        assert not any(m.topic.startswith("edge_inference/untrusted/") for m in watcher.messages)
    finally:
        watcher.close()
        trusted.stop()
        untrusted.stop()
        broker.stop()
