"""The add-on's s6 scripts, run by bash with a STAND-IN for bashio (bashio_standin.sh: no
Supervisor runs here) serving a sample /data/options.json and the Supervisor's MQTT service
data. Checked: shellcheck, the exact command line and EDGE_INFERENCE_* environment the run
script starts the server with, the token generated once and kept in /data, and the discovery
message sent to Home Assistant."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_server.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"
COMMON = ADDON / "rootfs" / "usr" / "lib" / "edge_inference" / "common.sh"
RUN = S6 / "edge_inference" / "run"
FINISH = S6 / "edge_inference" / "finish"
DISCOVERY = S6 / "discovery" / "run"
STANDIN = Path(__file__).with_name("bashio_standin.sh")
MQTT_SERVICE = {
    "host": "core-mosquitto",
    "port": 1883,
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "mqtt-secret",
}

# Records what the real server would be started with: argv and its own environment.
_RECORDER = """#!{python}
import json, os, sys
json.dump({{"argv": sys.argv[1:],
           "env": {{k: v for k, v in os.environ.items() if k.startswith("EDGE_INFERENCE_")}}}},
          open(os.environ["SERVER_OUT"], "w"))
"""


def _default_options() -> dict[str, Any]:
    config = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    return dict(config["options"])


class AddonSandbox:
    """/data, /usr/lib/edge_inference and PATH of the container, under a temporary folder."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.bin = base / "bin"
        self.bin.mkdir(exist_ok=True)
        recorder = self.bin / "edge-inference-server"
        recorder.write_text(_RECORDER.format(python=sys.executable), encoding="utf-8")
        recorder.chmod(0o755)
        curl = self.bin / "curl"  # the discovery script's health probe answers at once
        curl.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        curl.chmod(0o755)

    def _localise(self, text: str) -> str:
        return text.replace("/data", str(self.data)).replace(
            "/usr/lib/edge_inference/common.sh", str(self.base / "common.sh")
        )

    def run(
        self, script: Path, options: dict[str, Any], mqtt: dict[str, Any] | None
    ) -> subprocess.CompletedProcess[str]:
        (self.data / "options.json").write_text(json.dumps(options), encoding="utf-8")
        services = self.base / "services.json"
        services.unlink(missing_ok=True)
        if mqtt is not None:
            services.write_text(json.dumps(mqtt), encoding="utf-8")
        (self.base / "common.sh").write_text(
            self._localise(COMMON.read_text("utf-8")), encoding="utf-8"
        )
        body = self._localise(script.read_text("utf-8"))
        wrapped = self.base / "script.sh"
        wrapped.write_text(f"source {STANDIN}\n{body}", encoding="utf-8")
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "PYTHON": sys.executable,
            "OPTIONS_FILE": str(self.data / "options.json"),
            "SERVICES_FILE": str(services),
            "DISCOVERY_OUT": str(self.base / "discovery.json"),
            "SERVER_OUT": str(self.base / "server.json"),
            "ADDON_HOSTNAME": "local-edge-inference",
            "HOSTNAME": "a1b2c3d4e5f6",
        }
        return subprocess.run(
            ["bash", str(wrapped)], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    def started(self) -> dict[str, Any]:
        result = json.loads((self.base / "server.json").read_text(encoding="utf-8"))
        assert isinstance(result, dict)
        return result


@pytest.fixture
def sandbox(tmp_path: Path) -> AddonSandbox:
    return AddonSandbox(tmp_path)


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = [RUN, FINISH, DISCOVERY, COMMON, STANDIN]
    # -x follows `source` to common.sh through the scripts' `# shellcheck source=` lines.
    result = subprocess.run(
        [shellcheck, "-x", "--severity=style", *map(str, scripts)],
        capture_output=True, text=True, cwd=S6 / "edge_inference", check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_script_with_broker_and_generated_token(sandbox: AddonSandbox) -> None:
    result = sandbox.run(RUN, _default_options(), MQTT_SERVICE)
    assert result.returncode == 0, result.stderr
    started = sandbox.started()
    token = (sandbox.data / "token").read_text(encoding="utf-8").strip()
    assert started["argv"] == [
        "--host", "0.0.0.0",
        "--port", "8765",
        "--model-repo", "/opt/models",
        "--speech-model-dir", "/opt/speech_models",
        "--wyoming-port", "10300",
        "--data-dir", str(sandbox.data),
        "--advertise-url", "http://local-edge-inference:8765",
        "--mqtt-host", "core-mosquitto",
        "--mqtt-port", "1883",
        "--mqtt-username", "addons",
    ]  # fmt: skip
    # Secrets only in the environment, where `ps` does not show them.
    assert started["env"] == {
        "EDGE_INFERENCE_TOKEN": token,
        "EDGE_INFERENCE_MQTT_PASSWORD": "mqtt-secret",
    }
    assert len(token) >= 32
    assert stat.S_IMODE((sandbox.data / "token").stat().st_mode) == 0o600
    # The server accepts exactly this: argv + environment + the options file.
    settings = load_settings(
        [*started["argv"], "--options-file", str(sandbox.data / "options.json")],
        env=started["env"],
    )
    assert settings.token == token
    assert settings.mqtt_password == "mqtt-secret"
    assert settings.max_queue == _default_options()["max_queue"]

    # A restart keeps the token: Home Assistant stored it.
    again = sandbox.run(RUN, _default_options(), MQTT_SERVICE)
    assert again.returncode == 0, again.stderr
    assert sandbox.started()["env"]["EDGE_INFERENCE_TOKEN"] == token


def test_run_script_with_users_token_url_and_tls_broker(sandbox: AddonSandbox) -> None:
    options = {
        **_default_options(),
        "token": "user-chosen-token",
        "advertise_url": "http://homeassistant.local:8765",
        "log_level": "debug",
        "speech_model": "base",
        "llm_upstream": ["http://192.168.1.60:8080", "qwen3=http://gpu-box:8081/v1"],
    }
    anonymous_tls = {**MQTT_SERVICE, "ssl": True, "username": "", "password": ""}
    result = sandbox.run(RUN, options, anonymous_tls)
    assert result.returncode == 0, result.stderr
    started = sandbox.started()
    assert started["argv"] == [
        "--host", "0.0.0.0",
        "--port", "8765",
        "--model-repo", "/opt/models",
        "--speech-model-dir", "/opt/speech_models",
        "--wyoming-port", "10300",
        "--data-dir", str(sandbox.data),
        "--mqtt-host", "core-mosquitto",
        "--mqtt-port", "1883",
        "--mqtt-tls", "true",
    ]  # fmt: skip
    assert started["env"] == {"EDGE_INFERENCE_TOKEN": "user-chosen-token"}
    assert not (sandbox.data / "token").exists()
    settings = load_settings(
        [*started["argv"], "--options-file", str(sandbox.data / "options.json")],
        env=started["env"],
    )
    assert settings.advertise_url == "http://homeassistant.local:8765"  # from options.json
    assert settings.log_level == "debug"
    assert settings.speech_model == "base"
    assert settings.llm_upstream == ("http://192.168.1.60:8080", "qwen3=http://gpu-box:8081/v1")
    assert settings.wyoming_port == 10300


def test_run_script_without_broker_still_starts(sandbox: AddonSandbox) -> None:
    result = sandbox.run(RUN, _default_options(), mqtt=None)
    assert result.returncode == 0, result.stderr
    assert "No MQTT broker from the Supervisor" in result.stderr
    assert "--mqtt-host" not in sandbox.started()["argv"]


def test_discovery_sends_url_token_and_server_id(sandbox: AddonSandbox) -> None:
    (sandbox.data / "server_id").write_text("abc123def456\n", encoding="utf-8")
    # The run script generates the token; discovery must send the same one.
    assert sandbox.run(RUN, _default_options(), MQTT_SERVICE).returncode == 0
    token = sandbox.started()["env"]["EDGE_INFERENCE_TOKEN"]
    result = sandbox.run(DISCOVERY, _default_options(), MQTT_SERVICE)
    assert result.returncode == 0, result.stderr
    assert "Sent discovery information to Home Assistant" in result.stderr
    message = json.loads((sandbox.base / "discovery.json").read_text(encoding="utf-8"))
    assert message == {
        "service": "edge_inference",
        "config": {
            "url": "http://local-edge-inference:8765",
            "token": token,
            "server_id": "abc123def456",
        },
    }
