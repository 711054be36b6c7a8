"""What a config entry keeps at run time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigEntry

if TYPE_CHECKING:
    from .client import EdgeInferenceClient
    from .coordinator import EdgeInferenceCoordinator
    from .pipeline import CameraPipeline
    from .sensor_pipeline import SensorPipeline

# Adds a pipeline's entities of one platform: all of them (None) or those of new labels.
type PipelineEntityAdder = Callable[[CameraPipeline, list[str] | None], None]


@dataclass
class EdgeInferenceData:
    """The client, the server's coordinator and one pipeline per camera subentry."""

    client: EdgeInferenceClient
    coordinator: EdgeInferenceCoordinator
    pipelines: dict[str, CameraPipeline] = field(default_factory=dict)
    # The subentries the entry was built from; a change of those not handled one by one
    # (see subentries.py) reloads the entry.
    subentries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One per platform with pipeline entities, for pipelines added or changed later.
    pipeline_adders: list[PipelineEntityAdder] = field(default_factory=list)
    # One per sensor pipeline subentry (a change reloads the entry).
    sensor_pipelines: dict[str, SensorPipeline] = field(default_factory=dict)
    # Subentry changes are applied one at a time.
    subentry_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


type EdgeInferenceConfigEntry = ConfigEntry[EdgeInferenceData]
