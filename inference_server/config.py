"""Settings from the command line, environment variables and the add-on's options.json.

Precedence: command line > environment (`EDGE_INFERENCE_<NAME>`) > options.json > default.
Every bad value ends in one clear line naming the setting, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "EDGE_INFERENCE_"
ADDON_OPTIONS = Path("/data/options.json")
BACKENDS = ("local", "triton")
_SERVER_ID_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_LLM_UPSTREAM_RE = re.compile(r"^([^=\s]+=)?https?://[^/\s]+\S*$")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8765
    token: str = ""
    advertise_url: str = ""
    server_id: str = ""
    name: str = ""
    model_repo: Path = Path("model_repository")
    data_dir: Path = Path("data")
    backend: str = "local"
    triton_url: str = "grpc://127.0.0.1:8001"
    default_model: str = "yolox-nano"
    max_body_mb: float = 20.0
    max_queue: int = 64
    batching: bool = True
    llm_upstream: tuple[str, ...] = ()
    llm_timeout: float = 120.0
    llm_health_interval: float = 10.0
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = field(default="", repr=False)
    mqtt_tls: bool = False
    mqtt_ca_file: str = ""
    mqtt_base_topic: str = "edge_inference"
    stats_interval: float = 30.0
    log_level: str = "info"
    max_uploads: int = 16
    max_image_mp: float = 40.0
    request_timeout: float = 30.0
    media_root: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    speech_model_dir: Path = Path("speech_models")
    speech_model: str = "tiny.en"
    speech_max_streams: int = 4
    speech_max_audio_s: float = 60.0
    wyoming_port: int = 0
    speech_short_window: bool = True
    speech_preload: bool = True

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


_HELP: dict[str, str] = {
    "host": "address to listen on",
    "port": "HTTP port",
    "token": "API bearer token (required; or EDGE_INFERENCE_TOKEN)",
    "advertise_url": "base URL announced on MQTT (default: http://<this host's address>:<port>)",
    "server_id": "stable id in MQTT topics (default: generated once, kept in --data-dir)",
    "name": "friendly name shown in Home Assistant",
    "model_repo": "Triton-layout model repository (<repo>/<model>/config.pbtxt)",
    "data_dir": "where the server keeps its id and camera registrations",
    "backend": "where models run: local (in-process CPU/GPU) or triton",
    "triton_url": "Triton endpoint for --backend triton (grpc://host:8001 or http://host:8000)",
    "default_model": "vision model used when a request names none",
    "max_body_mb": "largest request body accepted, in MiB",
    "max_queue": "requests waiting per model before 503 queue_full",
    "batching": "dynamic batching of concurrent requests (true/false)",
    "llm_upstream": "OpenAI-compatible LLM server behind /v1 (llama-server, vLLM, LiteLLM): URL "
    "(its /v1/models are served) or MODEL=URL; repeat the option (or comma-separate) for more",
    "llm_timeout": "seconds an LLM upstream may send nothing before the request fails",
    "llm_health_interval": "seconds between health checks of each LLM upstream",
    "mqtt_host": "MQTT broker host (empty: no MQTT announce)",
    "mqtt_port": "MQTT broker port",
    "mqtt_username": "MQTT username",
    "mqtt_password": "MQTT password (or EDGE_INFERENCE_MQTT_PASSWORD)",
    "mqtt_tls": "connect to the broker with TLS (true/false)",
    "mqtt_ca_file": "CA bundle for MQTT TLS (default: system CAs)",
    "mqtt_base_topic": "MQTT base topic",
    "stats_interval": "seconds between MQTT stats messages",
    "log_level": "debug, info, warning or error",
    "max_uploads": "requests with a body handled at once; more get 503 before their body is read",
    "max_image_mp": "largest image accepted, in megapixels, read from its header before decoding",
    "request_timeout": "seconds a request may take before it is answered 503 timeout",
    "media_root": "folder whose video files may be camera sources (empty: no local files)",
    "tls_cert": "PEM certificate (chain) to serve HTTPS with; needs --tls-key",
    "tls_key": "PEM private key for --tls-cert",
    "speech_model_dir": "Whisper models for speech-to-text (CTranslate2 folders, one per model)",
    "speech_model": "speech-to-text model: a folder in --speech-model-dir (tiny.en, base)",
    "speech_max_streams": "live speech streams at once (WebSocket and Wyoming) before 503",
    "speech_max_audio_s": "longest audio one /speech/transcribe request may hold, in seconds",
    "wyoming_port": "TCP port of the Wyoming speech-to-text server (0: off; Wyoming's usual 10300)",
    "speech_short_window": "final decodes encode max(10 s, audio + 2 s), not Whisper's 30 s "
    "(about 3x faster on a CPU, a little less accurate; partial passes always do; true/false)",
    "speech_preload": "load the speech model at start, so the first command does not wait for it "
    "(false: on first use)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-inference-server",
        description="Local AI for Home Assistant: object detection served over HTTP and "
        "announced on MQTT. Every option can also be set as EDGE_INFERENCE_<OPTION> "
        "(e.g. EDGE_INFERENCE_TOKEN) or in the add-on's /data/options.json.",
    )
    for spec in fields(Settings):
        flag = "--" + spec.name.replace("_", "-")
        default = spec.default
        repeatable = isinstance(default, tuple)
        parser.add_argument(
            flag,
            dest=spec.name,
            default=None,
            action="append" if repeatable else "store",
            metavar=spec.name.upper(),
            help=f"{_HELP[spec.name]} (default: {default if default not in ('', ()) else 'unset'})",
        )
    parser.add_argument("--options-file", default=None, help="add-on options JSON to read")
    return parser


def load_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Merge all sources into validated Settings, or raise ConfigError."""
    args = build_parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    options_path = Path(args.options_file) if args.options_file else ADDON_OPTIONS
    options = _read_options(options_path) if args.options_file or options_path.exists() else {}
    raw: dict[str, Any] = {}
    for spec in fields(Settings):
        value = getattr(args, spec.name)
        if value is None:
            value = env.get(ENV_PREFIX + spec.name.upper())
        if value is None:
            value = options.get(spec.name)
        if value is not None and value not in ("", []):
            raw[spec.name] = _coerce(spec.name, value, type(spec.default))
    settings = Settings(**raw)
    _validate(settings)
    return settings


def ensure_server_id(settings: Settings) -> str:
    """The configured id, or one generated once and kept in the data dir."""
    if settings.server_id:
        return settings.server_id
    id_file = settings.data_dir / "server_id"
    if id_file.exists():
        return id_file.read_text(encoding="utf-8").strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server_id = uuid.uuid4().hex[:12]
    id_file.write_text(server_id + "\n", encoding="utf-8")
    return server_id


def _read_options(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"options file {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"options file {path}: expected a JSON object")
    return data


def _coerce(name: str, value: Any, kind: type) -> Any:
    flag = "--" + name.replace("_", "-")
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is Path:
            return Path(str(value)).expanduser()
        if kind is tuple:  # repeated flags, a list in options.json, or comma-separated text
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: {value!r} is not a valid {kind.__name__}") from None


def _validate(s: Settings) -> None:
    if not s.token:
        raise ConfigError("--token: an API token is required (or set EDGE_INFERENCE_TOKEN)")
    if len(s.token) < 8:
        raise ConfigError("--token: use at least 8 characters")
    if not 0 < s.port < 65536:
        raise ConfigError(f"--port: {s.port} is not a TCP port")
    if not 0 < s.mqtt_port < 65536:
        raise ConfigError(f"--mqtt-port: {s.mqtt_port} is not a TCP port")
    if s.backend not in BACKENDS:
        raise ConfigError(f"--backend: {s.backend!r} is not one of {', '.join(BACKENDS)}")
    if s.server_id and not _SERVER_ID_RE.match(s.server_id):
        raise ConfigError("--server-id: use 1-64 characters of a-z, 0-9, _ and -")
    if s.max_body_mb <= 0 or s.max_queue <= 0 or s.stats_interval <= 0:
        raise ConfigError("--max-body-mb, --max-queue and --stats-interval must be positive")
    if s.advertise_url and not re.match(r"^https?://", s.advertise_url):
        raise ConfigError("--advertise-url: must start with http:// or https://")
    if s.backend == "triton" and not re.match(r"^(grpc|http|https)://", s.triton_url):
        raise ConfigError("--triton-url: must start with grpc://, http:// or https://")
    if s.max_uploads <= 0 or s.max_image_mp <= 0 or s.request_timeout <= 0:
        raise ConfigError("--max-uploads, --max-image-mp and --request-timeout must be positive")
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not 0 <= s.wyoming_port < 65536:
        raise ConfigError(f"--wyoming-port: {s.wyoming_port} is not a TCP port (0: off)")
    if s.speech_max_streams <= 0 or s.speech_max_audio_s <= 0:
        raise ConfigError("--speech-max-streams and --speech-max-audio-s must be positive")
    for upstream in s.llm_upstream:
        if not _LLM_UPSTREAM_RE.match(upstream):
            raise ConfigError(f"--llm-upstream: {upstream!r} is not URL or MODEL=URL")
    if s.llm_timeout <= 0 or s.llm_health_interval <= 0:
        raise ConfigError("--llm-timeout and --llm-health-interval must be positive")
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-level: one of debug, info, warning, error")
    if not s.mqtt_base_topic.strip("/") or any(c in s.mqtt_base_topic for c in "+#"):
        raise ConfigError("--mqtt-base-topic: must be non-empty, without + or #")
