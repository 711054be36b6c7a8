"""Constants for the Edge Inference integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "edge_inference"
LOGGER = logging.getLogger(__package__)

# The protocol this integration speaks (docs/protocol.md); a server announcing
# another one gets a repair issue.
PROTOCOL_VERSION: Final = 1
BASE_TOPIC: Final = "edge_inference"

CONF_SERVER_ID: Final = "server_id"

SUBENTRY_CAMERA: Final = "camera"
CONF_CAMERA_ENTITY_ID: Final = "camera_entity_id"
CONF_LABELS: Final = "labels"
CONF_MIN_SCORE: Final = "min_score"
CONF_MODE: Final = "mode"
CONF_INTERVAL: Final = "interval"
CONF_FPS: Final = "fps"
CONF_CLEAR_AFTER: Final = "clear_after"
CONF_MOTION_PERCENT: Final = "motion_percent"

MODE_SNAPSHOT: Final = "snapshot"
MODE_STREAM: Final = "stream"

DEFAULT_LABELS: Final = ["person"]
DEFAULT_MIN_SCORE: Final = 0.5
DEFAULT_INTERVAL: Final = 5.0
DEFAULT_CLEAR_AFTER: Final = 30.0
DEFAULT_FPS: Final = 2.0  # detections per second in stream mode
# Stream mode: the share of the picture (in %) that must change for the server to run a
# detection (its motion gate; 0 detects on every frame). The server's own default.
DEFAULT_MOTION_PERCENT: Final = 0.2

EVENT_DETECTED: Final = "detected"

ISSUE_PROTOCOL: Final = "incompatible_protocol"
ISSUE_AUTH: Final = "token_rejected"
ISSUE_UNVERIFIED_URL: Final = "unverified_url"


def announce_topic(server_id: str) -> str:
    """Topic where a server announces itself (retained)."""
    return f"{BASE_TOPIC}/{server_id}/announce"


def status_topic(server_id: str) -> str:
    """Topic with the server's `online`/`offline` state (retained, last will)."""
    return f"{BASE_TOPIC}/{server_id}/status"


def stats_topic(server_id: str) -> str:
    """Topic with the server's periodic statistics."""
    return f"{BASE_TOPIC}/{server_id}/stats"


def events_topic(server_id: str) -> str:
    """Topic with the server's detection events."""
    return f"{BASE_TOPIC}/{server_id}/events"


def counts_topic(server_id: str, camera_id: str) -> str:
    """Topic with one camera's label counts."""
    return f"{BASE_TOPIC}/{server_id}/cameras/{camera_id}/counts"


def camera_status_topic(server_id: str, camera_id: str) -> str:
    """Topic with one camera's source state: running, stalled, error, stopped (retained)."""
    return f"{BASE_TOPIC}/{server_id}/camera/{camera_id}/status"


def server_camera_id(subentry_id: str) -> str:
    """The camera id registered on the server for a pipeline subentry."""
    return f"ha-{subentry_id.lower()}"


# LLM agents (conversation and AI Task subentries), served by the server's /v1 proxy.
SUBENTRY_CONVERSATION: Final = "conversation"
SUBENTRY_AI_TASK: Final = "ai_task_data"
CONF_CHAT_MODEL: Final = "chat_model"
CONF_MAX_HISTORY: Final = "max_history"
CONF_TEMPERATURE: Final = "temperature"
DEFAULT_MAX_HISTORY: Final = 10  # user turns kept in the prompt
DEFAULT_TEMPERATURE: Final = 0.2  # low: small models act more reliably
MAX_TOOL_ITERATIONS: Final = 10
# The server queues voice before batch work when its LLM is busy (docs/protocol.md).
PRIORITY_VOICE: Final = "voice"
PRIORITY_BATCH: Final = "batch"
