"""What a config entry keeps at run time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigEntry

if TYPE_CHECKING:
    from .client import EdgeInferenceClient
    from .coordinator import EdgeInferenceCoordinator
    from .pipeline import CameraPipeline


@dataclass
class EdgeInferenceData:
    """The client, the server's coordinator and one pipeline per camera subentry."""

    client: EdgeInferenceClient
    coordinator: EdgeInferenceCoordinator
    pipelines: dict[str, CameraPipeline] = field(default_factory=dict)
    # The subentries the pipelines were built from; a change reloads the entry.
    subentries: dict[str, dict[str, Any]] = field(default_factory=dict)


type EdgeInferenceConfigEntry = ConfigEntry[EdgeInferenceData]
