"""The add-on's files pass the Supervisor's own rules (tests/packaging/supervisor_schema.py), so
a mistake does not make the add-on vanish from the store: the Supervisor skips an add-on whose
config it cannot validate, with a line in its log and nothing in the UI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
import yaml
from PIL import Image

from tests.packaging import supervisor_schema as sv

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return _load(ADDON / "config.yaml")


def test_config_passes_supervisor_schema(config: dict[str, Any]) -> None:
    validated = sv.SCHEMA_APP_CONFIG(dict(config))
    assert not sv.unknown_keys(config), "keys the Supervisor would drop silently"
    assert not set(config["arch"]) & set(sv.ARCH_DEPRECATED)
    # Values the add-on relies on, as the Supervisor reads them.
    assert validated["init"] is False  # s6-overlay from the base image is PID 1
    assert validated["hassio_api"] is True  # services and discovery APIs
    assert validated["startup"] == "application"
    assert validated["services"] == ["mqtt:need"]
    assert validated["discovery"] == ["edge_inference"]


def test_supervisor_schema_rejects_what_it_should(config: dict[str, Any]) -> None:
    """The transcribed schema is not a rubber stamp: typical mistakes fail it."""
    mistakes: list[dict[str, Any]] = [
        {**config, "arch": ["x86_64"]},
        {**config, "slug": "edge inference"},
        {**config, "watchdog": "http://localhost:8765/api/v1/health"},
        {**config, "services": ["mqtt:required"]},
        {**config, "schema": {"max_queue": "integer"}},
        {**config, "ports": {"8765": "http"}},
        {**config, "image": "ghcr.io/edge-inference/{arch}-addon:0.1.0"},
        {key: value for key, value in config.items() if key != "description"},
    ]
    for mistake in mistakes:
        with pytest.raises(vol.Invalid):
            sv.SCHEMA_APP_CONFIG(mistake)


def test_watchdog_is_the_health_route(config: dict[str, Any]) -> None:
    assert config["watchdog"] == "http://[HOST]:[PORT:8765]/api/v1/health"
    assert "8765/tcp" in config["ports"]


def test_published_image_per_architecture(config: dict[str, Any]) -> None:
    """HA's own add-ons ship prebuilt images: `{arch}` is filled in by the Supervisor."""
    assert config["image"] == "ghcr.io/edge-inference/{arch}-addon-edge-inference"
    build = sv.SCHEMA_BUILD_CONFIG(_load(ADDON / "build.yaml"))
    assert set(build["build_from"]) == set(config["arch"])


def test_release_workflow_publishes_the_image_config_names(config: dict[str, Any]) -> None:
    workflow = _load(ROOT / ".github" / "workflows" / "addon-image.yaml")
    (job,) = workflow["jobs"].values()
    arches = {entry["arch"] for entry in job["strategy"]["matrix"]["include"]}
    assert arches == set(config["arch"])
    steps = job["steps"]
    (build,) = [step["with"] for step in steps if "build-push-action" in step.get("uses", "")]
    assert build["context"] == "."  # the repository root: the Dockerfile's COPY paths
    assert build["file"] == "addon/Dockerfile"
    tag = config["image"].replace("{arch}", "${{ matrix.arch }}")
    assert build["tags"] == f"{tag}:${{{{ steps.version.outputs.version }}}}"
    base = _load(ADDON / "build.yaml")["build_from"]["amd64"].replace("amd64", "${{ matrix.arch }}")
    assert f"BUILD_FROM={base}" in build["build-args"]


def test_default_options_pass_their_schema(config: dict[str, Any]) -> None:
    options = sv.validate_options(config["schema"], config["options"])
    assert options == config["options"]
    for key, kind in config["schema"].items():
        element = kind[0] if isinstance(kind, list) else kind
        assert sv.RE_SCHEMA_ELEMENT.match(element), key
    # A user's typical values, and values the schema must refuse.
    good = {
        **config["options"],
        "token": "a-long-enough-token",
        "advertise_url": "http://x:1",
        "llm_upstream": ["http://192.168.1.60:8080", "qwen3=https://gpu-box:8081/v1"],
    }
    sv.validate_options(config["schema"], good)
    for key, bad in (
        ("token", "short"),
        ("max_queue", 0),
        ("log_level", "verbose"),
        ("speech_model", "large-v3"),  # not in the image
        ("llm_upstream", ["gpu-box:8080"]),  # no scheme: the server would refuse to start
        ("llm_upstream", "http://gpu-box:8080"),  # a list, not a string
    ):
        with pytest.raises(vol.Invalid):
            sv.validate_options(config["schema"], {**config["options"], key: bad})


def test_translations_cover_every_option_and_port(config: dict[str, Any]) -> None:
    for path in sorted((ADDON / "translations").glob("*.yaml")):
        translations = sv.SCHEMA_APP_TRANSLATIONS(_load(path))
        assert set(translations["configuration"]) == set(config["schema"]), path.name
        for key, entry in translations["configuration"].items():
            assert entry["name"].strip(), key
            assert (entry.get("description") or "").strip(), key
        assert set(translations["network"]) == set(config["ports"]), path.name


def test_images() -> None:
    """Shown in the add-on store: icon 1:1 (128 px recommended), logo about 250x100."""
    with Image.open(ADDON / "icon.png") as icon:
        assert icon.format == "PNG"
        assert icon.size == (128, 128)
        alpha = icon.getchannel("A").getextrema()
        assert alpha == (0, 255)  # transparent corners (rounded), opaque inside
    with Image.open(ADDON / "logo.png") as logo:
        assert logo.format == "PNG"
        assert logo.size == (250, 100)


def test_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it


def test_supervisor_schema_matches_source() -> None:
    """The transcription's expressions are still the Supervisor's (when its source is here)."""
    source_dir = sv.SUPERVISOR_SRC / "supervisor"
    if not source_dir.is_dir():
        pytest.skip(f"no Supervisor source at {sv.SUPERVISOR_SRC} (SUPERVISOR_SRC)")
    validate = (source_dir / "apps" / "validate.py").read_text(encoding="utf-8")
    source = validate + "".join(
        (source_dir / name).read_text(encoding="utf-8")
        for name in ("validate.py", "apps/options.py", "docker/utils.py")
    )
    for pattern in (
        sv.RE_SERVICE.pattern, sv.RE_DOCKER_IMAGE_BUILD.pattern, sv.RE_WATCHDOG,
        sv.RE_WEBUI, sv.RE_DOCKER_PORT, sv._RE_IMAGE_PATH_COMPONENT.pattern,
    ):  # fmt: skip
        assert f'r"{pattern}"' in source, pattern
    options = (source_dir / "apps" / "options.py").read_text(encoding="utf-8")
    element = options.split("RE_SCHEMA_ELEMENT = re.compile(", 1)[1].split("\n)\n", 1)[0]
    assert "".join(re.findall(r'r"([^"]*)"', element)) == sv.RE_SCHEMA_ELEMENT.pattern
    machine = validate.split("RE_MACHINE = re.compile(", 1)[1].split("\n)\n", 1)[0]
    assert "".join(re.findall(r'r"([^"]*)"', machine)) == sv.RE_MACHINE.pattern
    # The config schema's keys: its ATTR_* names resolved through const.py.
    constants = dict(
        re.findall(r'^(ATTR_\w+) = "([^"]+)"', "".join(
            (source_dir / name).read_text(encoding="utf-8")
            for name in ("const.py", "apps/const.py")
        ), re.MULTILINE)
    )  # fmt: skip
    block = validate.split("_SCHEMA_APP_CONFIG = vol.Schema(", 1)[1].split("extra=vol", 1)[0]
    names = re.findall(r"vol\.(?:Required|Optional)\((ATTR_\w+)", block)
    keys = {constants[name] for name in names}
    nested = {"type", "read_only", "path"}  # the map entries' own keys
    assert keys - nested == sv.KNOWN_KEYS
