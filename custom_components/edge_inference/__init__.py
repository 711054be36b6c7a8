"""Edge Inference: local object detection servers, found over MQTT."""

from __future__ import annotations

from homeassistant.components.mqtt import async_wait_for_mqtt_client
from homeassistant.const import CONF_API_TOKEN, CONF_URL, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from .client import EdgeInferenceClient
from .const import (
    CONF_SERVER_ID,
    DOMAIN,
    SUBENTRY_AI_TASK,
    SUBENTRY_CAMERA,
    SUBENTRY_CONVERSATION,
)
from .coordinator import EdgeInferenceCoordinator
from .entity import server_device_info
from .models import EdgeInferenceConfigEntry, EdgeInferenceData
from .pipeline import CameraPipeline
from .repairs import async_clear_issues
from .sensor_pipeline import SUBENTRY_SENSORS, SensorPipeline
from .services import async_setup_services
from .subentries import async_follow_subentries, async_migrate_camera_refs

PLATFORMS = [
    Platform.AI_TASK,
    Platform.BINARY_SENSOR,
    Platform.CONVERSATION,
    Platform.EVENT,
    Platform.IMAGE,
    Platform.SENSOR,
    Platform.STT,
    Platform.SWITCH,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: EdgeInferenceConfigEntry) -> bool:
    """Check the server, follow its topics, add its entities and start the pipelines."""
    if not await async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_unavailable")
    client = EdgeInferenceClient(
        async_get_clientsession(hass), entry.data[CONF_URL], entry.data[CONF_API_TOKEN]
    )
    coordinator = EdgeInferenceCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()
    coordinator.server_device_id = (
        dr.async_get(hass)
        .async_get_or_create(config_entry_id=entry.entry_id, **server_device_info(coordinator))
        .id
    )
    for unsubscribe in await coordinator.async_subscribe():
        entry.async_on_unload(unsubscribe)

    async_migrate_camera_refs(hass, entry)
    cameras = {
        subentry_id: subentry
        for subentry_id, subentry in entry.subentries.items()
        if subentry.subentry_type == SUBENTRY_CAMERA
    }
    entry.runtime_data = EdgeInferenceData(
        client=client,
        coordinator=coordinator,
        pipelines={
            subentry_id: CameraPipeline(hass, entry, coordinator, subentry)
            for subentry_id, subentry in cameras.items()
        },
        subentries={subentry_id: dict(subentry.data) for subentry_id, subentry in cameras.items()},
    )
    entry.runtime_data.sensor_pipelines = {
        subentry_id: SensorPipeline(hass, client, subentry)
        for subentry_id, subentry in entry.subentries.items()
        if subentry.subentry_type == SUBENTRY_SENSORS
    }
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    for sensor_pipeline in entry.runtime_data.sensor_pipelines.values():
        # Warm-up reads days of history: in the background, setup does not wait for it.
        entry.async_create_background_task(
            hass, sensor_pipeline.async_start(), f"edge_inference {sensor_pipeline.title}"
        )
    for pipeline in entry.runtime_data.pipelines.values():
        await pipeline.async_start()
    # Not an update listener: HA 2026.12 refuses one beside flows that reload.
    # LLM agents are added and removed by reloading the entry.
    reload_types = (SUBENTRY_SENSORS, SUBENTRY_CONVERSATION, SUBENTRY_AI_TASK)
    entry.async_on_unload(async_follow_subentries(hass, entry, reload_types))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EdgeInferenceConfigEntry) -> bool:
    """Remove the entities, every subscription and every camera registered on the server."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        for pipeline in entry.runtime_data.pipelines.values():
            await pipeline.async_stop()
        for sensor_pipeline in entry.runtime_data.sensor_pipelines.values():
            await sensor_pipeline.async_stop()
    return unloaded


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: EdgeInferenceConfigEntry, device: dr.DeviceEntry
) -> bool:
    """A pipeline's device can go once its pipeline is gone; the server's stays."""
    return not any(
        identifier[0] == DOMAIN
        and (identifier[1] == entry.data[CONF_SERVER_ID] or identifier[1] in entry.subentries)
        for identifier in device.identifiers
    )


async def async_remove_entry(hass: HomeAssistant, entry: EdgeInferenceConfigEntry) -> None:
    """The entry is deleted: its repair issues go with it."""
    async_clear_issues(hass, entry)
