"""Settings from the command line, the environment and the add-on's options.json."""

from __future__ import annotations

import json
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from inference_server.config import ConfigError, Settings, ensure_server_id, load_settings
from tests.helpers.server_process import ROOT, server_python

NO_OPTIONS = ["--options-file", "/nonexistent-but-ignored"]


def load(argv: list[str], env: dict[str, str] | None = None, tmp: Path | None = None) -> Settings:
    options = tmp / "none.json" if tmp else None
    if options is not None:
        options.write_text("{}")
        argv = [*argv, "--options-file", str(options)]
    return load_settings(argv, env=env or {})


def test_command_line_beats_environment_beats_options(tmp_path: Path) -> None:
    options = tmp_path / "options.json"
    options.write_text(
        json.dumps({"port": 9000, "mqtt_host": "core-mosquitto", "token": "from-options"})
    )
    env = {"EDGE_INFERENCE_PORT": "9100", "EDGE_INFERENCE_BATCHING": "false"}
    settings = load_settings(["--port", "9200", "--options-file", str(options)], env=env)
    assert settings.port == 9200
    assert settings.batching is False
    assert settings.mqtt_host == "core-mosquitto"
    assert settings.token == "from-options"
    assert load_settings(["--options-file", str(options)], env=env).port == 9100


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--token: an API token is required"),
        (["--token", "short"], "--token: use at least 8"),
        (["--token", "long-enough", "--port", "http"], "--port: 'http' is not a valid int"),
        (["--token", "long-enough", "--port", "70000"], "--port: 70000 is not a TCP port"),
        (["--token", "long-enough", "--backend", "cuda"], "--backend: 'cuda' is not one of"),
        (["--token", "long-enough", "--server-id", "Kitchen NUC"], "--server-id"),
        (["--token", "long-enough", "--batching", "maybe"], "--batching: 'maybe'"),
        (["--token", "long-enough", "--advertise-url", "ftp://x"], "--advertise-url"),
        (["--token", "long-enough", "--mqtt-base-topic", "a/#"], "--mqtt-base-topic"),
        (["--token", "long-enough", "--max-queue", "0"], "must be positive"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load(argv, tmp=tmp_path)


def test_unreadable_options_file(tmp_path: Path) -> None:
    bad = tmp_path / "options.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_settings(["--options-file", str(bad)], env={})


def test_server_id_is_generated_once(tmp_path: Path) -> None:
    settings = load(["--token", "long-enough", "--data-dir", str(tmp_path)], tmp=tmp_path)
    first = ensure_server_id(settings)
    assert first == ensure_server_id(settings)
    assert (tmp_path / "server_id").read_text().strip() == first


def test_help_documents_every_setting() -> None:
    out = subprocess.run(
        [server_python(), "-m", "inference_server", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    for spec in fields(Settings):
        assert "--" + spec.name.replace("_", "-") in out


def test_a_bad_setting_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [server_python(), "-m", "inference_server", "--token", "long-enough", "--port", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin"},
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "edge-inference-server: --port: 'x' is not a valid int"
