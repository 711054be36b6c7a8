"""The Supervisor's rules for an add-on ("app") repository, transcribed for the tests.

The Supervisor (github.com/home-assistant/supervisor, Apache-2.0) cannot be imported here: it
needs Python 3.14 (its code uses PEP 758 `except A, B:`) and pulls in its whole core through
`apps/options.py`. So the voluptuous schemas below are copied from its source, expression by
expression, at SUPERVISOR_COMMIT:
- `supervisor/apps/validate.py`: `_SCHEMA_APP_CONFIG`, `SCHEMA_BUILD_CONFIG`,
  `SCHEMA_APP_TRANSLATIONS`, `RE_SERVICE`, `RE_MACHINE`;
- `supervisor/validate.py`: `network_port`, `docker_port(s)`, `docker_image`, `version_tag`
  (an AwesomeVersion there; any non-empty string passes it, as here);
- `supervisor/apps/options.py`: `RE_SCHEMA_ELEMENT` and `AppOptions._single_validate` for
  the option values (devices and `!secret` lookups left out: we use neither);
- `supervisor/const.py`, `apps/const.py`, `docker/const.py`: the enums, as their values.
The Supervisor removes keys it does not know (`extra=REMOVE_EXTRA`); `unknown_keys` reports
them, since a key it drops is a setting that silently does nothing.
test_supervisor_schema_matches_source checks the regular expressions against the source when
a copy of it is at SUPERVISOR_SRC.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import voluptuous as vol

SUPERVISOR_COMMIT = "090ef31ec024952c2469ed5a7c9f3ce8c1a5499e"  # 2026-08-21
SUPERVISOR_SRC = Path(
    os.environ.get("SUPERVISOR_SRC", Path.home() / ".cache" / "edge-inference" / "supervisor-src")
)

ARCH_ALL_COMPAT = ["aarch64", "amd64", "armhf", "armv7", "i386"]
ARCH_DEPRECATED = ["armhf", "armv7", "i386"]
APP_STARTUP = ["initialize", "system", "services", "application", "once"]
APP_BOOT_CONFIG = ["auto", "manual", "manual_only"]
APP_STAGE = ["stable", "experimental", "deprecated"]
APP_BACKUP_MODE = ["hot", "cold"]
ROLE_ALL = ["default", "homeassistant", "backup", "manager", "admin"]
MAPPING_TYPES = [
    "data", "config", "ssl", "local_apps", "backup", "share", "media",
    "homeassistant_config", "all_app_configs", "app_config",
    "addons", "all_addon_configs", "addon_config",
]  # fmt: skip
CAPABILITIES = [
    "BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH", "IPC_LOCK", "NET_ADMIN", "NET_RAW",
    "PERFMON", "SYS_ADMIN", "SYS_MODULE", "SYS_NICE", "SYS_PTRACE", "SYS_RAWIO",
    "SYS_RESOURCE", "SYS_TIME",
]  # fmt: skip

RE_SLUG = r"[-_.A-Za-z0-9]+"
RE_SERVICE = re.compile(r"^(?P<service>mqtt|mysql):(?P<rights>provide|want|need)$")
RE_DOCKER_IMAGE_BUILD = re.compile(
    r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[\.\-\w{}]+)?$"
)
RE_MACHINE = re.compile(
    r"^!?(?:"
    r"|intel-nuc"
    r"|khadas-vim3"
    r"|generic-aarch64"
    r"|generic-x86-64"
    r"|odroid-c2"
    r"|odroid-c4"
    r"|odroid-m1"
    r"|odroid-n2"
    r"|odroid-xu"
    r"|qemuarm-64"
    r"|qemuarm"
    r"|qemux86-64"
    r"|qemux86"
    r"|raspberrypi"
    r"|raspberrypi2"
    r"|raspberrypi3-64"
    r"|raspberrypi3"
    r"|raspberrypi4-64"
    r"|raspberrypi4"
    r"|raspberrypi5-64"
    r"|yellow"
    r"|green"
    r"|tinker"
    r")$"
)
RE_WATCHDOG = r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$"
RE_WEBUI = r"^(?:https?|\[PROTO:\w+\]):\/\/\[HOST\]:\[PORT:\d+\].*$"
RE_DOCKER_PORT = r"^\d+(?:/tcp|/udp)?$"
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
_RE_IMAGE_PATH_COMPONENT = re.compile(r"^[a-z0-9{][a-z0-9.\-_{}]*$")
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
IMAGE_DOMAIN_REGEX = re.compile(
    rf"(?:{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*|{_IPV6_ADDRESS})"
    r"(?::[0-9]+)?"
)
_SCHEMA_LENGTH_PARTS = ("i_min", "i_max", "f_min", "f_max", "s_min", "s_max", "p_min", "p_max")

network_port = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))
docker_port = vol.All(str, vol.Match(RE_DOCKER_PORT))
docker_ports = vol.Schema({docker_port: vol.Maybe(network_port)})
docker_ports_description = vol.Schema({docker_port: str})


def version_tag(value: Any) -> str:
    if value is None or str(value) == "":
        raise vol.Invalid("empty version")
    return str(value)


def _split_docker_domain(image_ref: str) -> tuple[str | None, str]:
    maybe_domain, separator, maybe_remainder = image_ref.partition("/")
    if not separator:
        return None, image_ref
    if maybe_domain == "index.docker.io":
        return "docker.io", maybe_remainder
    if (
        maybe_domain == "localhost"
        or "." in maybe_domain
        or ":" in maybe_domain
        or maybe_domain.lower() != maybe_domain
    ):
        return maybe_domain, maybe_remainder
    return None, image_ref


def docker_image(image: Any) -> str:
    if not image or not isinstance(image, str):
        raise vol.Invalid(f"Expected a non-empty string for docker image, got: {image}")
    registry, path = _split_docker_domain(image)
    if registry:
        if registry != registry.lower():
            raise vol.Invalid(f"Docker image registry must be lowercase: {image}")
        if IMAGE_DOMAIN_REGEX.fullmatch(registry) is None:
            raise vol.Invalid(f"Invalid Docker image registry '{registry}' in: {image}")
    if not path:
        raise vol.Invalid(f"Docker image has no name: {image}")
    if ":" in path:
        raise vol.Invalid(f"Docker image must not contain a tag: {image}")
    for component in path.split("/"):
        if not _RE_IMAGE_PATH_COMPONENT.match(component):
            raise vol.Invalid(f"Invalid Docker image path component '{component}' in: {image}")
    return image


SCHEMA_ELEMENT = vol.Schema(
    vol.Any(
        vol.Match(RE_SCHEMA_ELEMENT),
        [vol.Any(vol.Match(RE_SCHEMA_ELEMENT), {str: vol.Self})],
        {str: vol.Self},
    )
)

_FIELDS: dict[Any, Any] = {
    vol.Required("name"): str,
    vol.Required("version"): version_tag,
    vol.Required("slug"): vol.Match(r"^" + RE_SLUG + r"$"),
    vol.Required("description"): str,
    vol.Required("arch"): [vol.In(ARCH_ALL_COMPAT)],
    vol.Optional("machine"): vol.All([vol.Match(RE_MACHINE)], vol.Unique()),
    vol.Optional("url"): vol.Url(),
    vol.Optional("startup", default="application"): vol.In(APP_STARTUP),
    vol.Optional("boot", default="auto"): vol.In(APP_BOOT_CONFIG),
    vol.Optional("init", default=True): vol.Boolean(),
    vol.Optional("advanced", default=False): vol.Boolean(),
    vol.Optional("stage", default="stable"): vol.In(APP_STAGE),
    vol.Optional("ports"): docker_ports,
    vol.Optional("ports_description"): docker_ports_description,
    vol.Optional("watchdog"): vol.Match(RE_WATCHDOG),
    vol.Optional("webui"): vol.Match(RE_WEBUI),
    vol.Optional("ingress", default=False): vol.Boolean(),
    vol.Optional("ingress_port", default=8099): vol.Any(network_port, vol.Equal(0)),
    vol.Optional("ingress_entry"): str,
    vol.Optional("ingress_stream", default=False): vol.Boolean(),
    vol.Optional("panel_icon", default="mdi:puzzle"): str,
    vol.Optional("panel_title"): str,
    vol.Optional("panel_admin", default=True): vol.Boolean(),
    vol.Optional("homeassistant"): version_tag,
    vol.Optional("host_network", default=False): vol.Boolean(),
    vol.Optional("host_pid", default=False): vol.Boolean(),
    vol.Optional("host_ipc", default=False): vol.Boolean(),
    vol.Optional("host_uts", default=False): vol.Boolean(),
    vol.Optional("host_dbus", default=False): vol.Boolean(),
    vol.Optional("devices"): [str],
    vol.Optional("udev", default=False): vol.Boolean(),
    vol.Optional("tmpfs", default=False): vol.Boolean(),
    vol.Optional("map", default=list): [
        vol.Schema(
            {
                vol.Required("type"): vol.In(MAPPING_TYPES),
                vol.Optional("read_only", default=True): bool,
                vol.Optional("path"): str,
            }
        )
    ],
    vol.Optional("environment"): {vol.Match(r"\w*"): str},
    vol.Optional("privileged"): [vol.In(CAPABILITIES)],
    vol.Optional("apparmor", default=True): vol.Boolean(),
    vol.Optional("full_access", default=False): vol.Boolean(),
    vol.Optional("audio", default=False): vol.Boolean(),
    vol.Optional("video", default=False): vol.Boolean(),
    vol.Optional("gpio", default=False): vol.Boolean(),
    vol.Optional("usb", default=False): vol.Boolean(),
    vol.Optional("uart", default=False): vol.Boolean(),
    vol.Optional("devicetree", default=False): vol.Boolean(),
    vol.Optional("kernel_modules", default=False): vol.Boolean(),
    vol.Optional("realtime", default=False): vol.Boolean(),
    vol.Optional("hassio_api", default=False): vol.Boolean(),
    vol.Optional("hassio_role", default="default"): vol.In(ROLE_ALL),
    vol.Optional("homeassistant_api", default=False): vol.Boolean(),
    vol.Optional("stdin", default=False): vol.Boolean(),
    vol.Optional("legacy", default=False): vol.Boolean(),
    vol.Optional("docker_api", default=False): vol.Boolean(),
    vol.Optional("auth_api", default=False): vol.Boolean(),
    vol.Optional("services"): [vol.Match(RE_SERVICE)],
    vol.Optional("discovery"): [str],
    vol.Optional("backup_exclude"): [str],
    vol.Optional("backup_pre"): str,
    vol.Optional("backup_post"): str,
    vol.Optional("backup", default="hot"): vol.In(APP_BACKUP_MODE),
    vol.Optional("options", default={}): dict,
    vol.Optional("schema", default={}): vol.Any(vol.Schema({str: SCHEMA_ELEMENT}), False),
    vol.Optional("image"): docker_image,
    vol.Optional("ulimits", default=dict): vol.Any(
        {str: vol.Coerce(int)},
        {
            str: vol.Any(
                vol.Coerce(int),
                vol.Schema(
                    {vol.Required("soft"): vol.Coerce(int), vol.Required("hard"): vol.Coerce(int)}
                ),
            )
        },
    ),
    vol.Optional("timeout", default=10): vol.All(vol.Coerce(int), vol.Range(min=10, max=300)),
    vol.Optional("journald", default=False): vol.Boolean(),
    vol.Optional("breaking_versions", default=list): [version_tag],
}
SCHEMA_APP_CONFIG = vol.Schema(_FIELDS, extra=vol.REMOVE_EXTRA)
KNOWN_KEYS = {str(key) for key in _FIELDS}

SCHEMA_BUILD_CONFIG = vol.Schema(
    {
        vol.Optional("build_from", default=dict): vol.Any(
            vol.Match(RE_DOCKER_IMAGE_BUILD),
            vol.Schema({vol.In(ARCH_ALL_COMPAT): vol.Match(RE_DOCKER_IMAGE_BUILD)}),
        ),
        vol.Optional("squash", default=False): vol.Boolean(),
        vol.Optional("args", default=dict): vol.Schema({str: str}),
        vol.Optional("labels", default=dict): vol.Schema({str: str}),
    },
    extra=vol.REMOVE_EXTRA,
)

SCHEMA_TRANSLATION_CONFIGURATION = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Optional("description"): vol.Maybe(str),
        vol.Optional("fields"): {str: vol.Self},
    },
    extra=vol.REMOVE_EXTRA,
)
SCHEMA_APP_TRANSLATIONS = vol.Schema(
    {
        vol.Optional("configuration"): {str: SCHEMA_TRANSLATION_CONFIGURATION},
        vol.Optional("network"): {str: str},
    },
    extra=vol.REMOVE_EXTRA,
)


def unknown_keys(config: dict[str, Any]) -> set[str]:
    return set(config) - KNOWN_KEYS


def validate_option(typ: str, value: Any) -> Any:
    """AppOptions._single_validate for the types an add-on without devices uses."""
    match = RE_SCHEMA_ELEMENT.match(typ)
    if not match:
        raise vol.Invalid(f"Unknown type '{typ}'")
    range_args: dict[str, Any] = {}
    for group_name in _SCHEMA_LENGTH_PARTS:
        group_value = match.group(group_name)
        if group_value:
            range_args[group_name[2:]] = float(group_value)
    if typ.startswith(("str", "password")):
        return vol.All(str, vol.Length(**range_args))(value)
    if typ.startswith("int"):
        return vol.All(vol.Coerce(int), vol.Range(**range_args))(value)
    if typ.startswith("float"):
        return vol.All(vol.Coerce(float), vol.Range(**range_args))(value)
    if typ.startswith("bool"):
        return vol.Boolean()(value)
    if typ.startswith("email"):
        return vol.Email()(value)
    if typ.startswith("url"):
        return vol.Url()(value)
    if typ.startswith("port"):
        return network_port(value)
    if typ.startswith("match"):
        return vol.Match(match.group("match"))(str(value))
    if typ.startswith("list"):
        return vol.In(match.group("list").split("|"))(str(value))
    raise vol.Invalid(f"type '{typ}' is not covered here")


def validate_options(schema: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """AppOptions.__call__, _nested_validate_list and _check_missing_options (no nested dicts):
    what the add-on would start with."""
    validated: dict[str, Any] = {}
    for key, value in options.items():
        typ = schema[key]
        if isinstance(typ, list):
            if not isinstance(value, list):
                raise vol.Invalid(f"Invalid list for option '{key}'")
            validated[key] = [validate_option(typ[0], item) for item in value]
        else:
            validated[key] = validate_option(typ, value)

    def optional(typ: Any) -> bool:  # a list's element type decides, e.g. ["str?"]
        element = typ[0] if isinstance(typ, list) and typ else typ
        return isinstance(element, str) and element.endswith("?")

    missing = [key for key in set(schema) - set(options) if not optional(schema[key])]
    if missing:
        raise vol.Invalid(f"Missing option(s) {sorted(missing)}")
    return validated
