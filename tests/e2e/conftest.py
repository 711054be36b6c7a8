"""HA-only fixtures for the end-to-end tests (shared with tests/integration)."""

from __future__ import annotations

import pytest

import custom_components.edge_inference  # noqa: F401  (the plugin finds it importable)
from tests.integration.common import (  # noqa: F401
    broker,
    ha_core,
    no_deprecations,
    real_mqtt,
    server,
)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let HA load custom_components/edge_inference."""
