"""Subentry changes while the entry runs, without an update listener.

HA 2026.12 refuses an update listener beside flows that reload the entry (reauth,
reconfigure, discovery), so the entry follows HA's config entry signal instead. A camera
pipeline added, changed or removed starts, restarts or stops alone: the others keep their
streams, counts, occupancy and events. Other subentries that need it (LLM agents) reload.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .const import CONF_CAMERA_ENTITY_ID, SUBENTRY_CAMERA
from .models import EdgeInferenceConfigEntry
from .pipeline import CameraPipeline, camera_ref


@callback
def async_follow_subentries(
    hass: HomeAssistant, entry: EdgeInferenceConfigEntry, reload_types: Collection[str]
) -> CALLBACK_TYPE:
    """Apply subentry changes of this entry; a change of a `reload_types` one reloads it."""
    at_setup = _reloading_subentries(entry, reload_types)

    @callback
    def _changed(change: ConfigEntryChange, changed: ConfigEntry[Any]) -> None:
        if (
            change is not ConfigEntryChange.UPDATED
            or changed.entry_id != entry.entry_id
            or entry.state is not ConfigEntryState.LOADED
        ):
            return
        if _reloading_subentries(entry, reload_types) != at_setup:
            hass.config_entries.async_schedule_reload(entry.entry_id)
            return
        entry.async_create_background_task(
            hass, async_sync_pipelines(hass, entry), "edge_inference camera pipelines"
        )

    return async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, _changed)


def _reloading_subentries(
    entry: EdgeInferenceConfigEntry, types: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The data of the subentries of these types; camera pipelines change one by one."""
    return {
        subentry_id: dict(subentry.data)
        for subentry_id, subentry in entry.subentries.items()
        if subentry.subentry_type in types and subentry.subentry_type != SUBENTRY_CAMERA
    }


async def async_sync_pipelines(hass: HomeAssistant, entry: EdgeInferenceConfigEntry) -> None:
    """Bring the running pipelines in line with the camera subentries, one at a time."""
    runtime = entry.runtime_data
    async with runtime.subentry_lock:
        cameras = {
            subentry_id: subentry
            for subentry_id, subentry in entry.subentries.items()
            if subentry.subentry_type == SUBENTRY_CAMERA
        }
        for subentry_id in [s for s in runtime.pipelines if s not in cameras]:
            # HA removes the subentry's device and entities with it.
            await runtime.pipelines.pop(subentry_id).async_stop()
        for subentry_id, subentry in cameras.items():
            pipeline = runtime.pipelines.get(subentry_id)
            if pipeline is None:
                pipeline = CameraPipeline(hass, entry, runtime.coordinator, subentry)
                runtime.pipelines[subentry_id] = pipeline
                for add in runtime.pipeline_adders:
                    add(pipeline, None)
                await pipeline.async_start()
            elif pipeline.data != dict(subentry.data) or pipeline.title != subentry.title:
                before = set(pipeline.labels)
                await pipeline.async_reconfigure(subentry)
                if new_labels := [label for label in pipeline.labels if label not in before]:
                    for add in runtime.pipeline_adders:
                        add(pipeline, new_labels)


@callback
def async_migrate_camera_refs(hass: HomeAssistant, entry: EdgeInferenceConfigEntry) -> None:
    """Pipelines stored by entity id follow their camera by registry id from now on."""
    for subentry in list(entry.subentries.values()):
        ref = subentry.data.get(CONF_CAMERA_ENTITY_ID)
        if subentry.subentry_type != SUBENTRY_CAMERA or not isinstance(ref, str):
            continue
        if (new := camera_ref(hass, ref)) != ref:
            hass.config_entries.async_update_subentry(
                entry, subentry, data={**subentry.data, CONF_CAMERA_ENTITY_ID: new}
            )
