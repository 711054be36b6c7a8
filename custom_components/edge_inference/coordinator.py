"""The server's state: /info at setup, then pushed over MQTT (announce, status, stats)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from homeassistant.components import mqtt
from homeassistant.const import CONF_API_TOKEN
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .client import CannotConnect, EdgeInferenceClient, EdgeInferenceError, InvalidAuth
from .const import (
    CONF_SERVER_ID,
    DOMAIN,
    LOGGER,
    announce_topic,
    stats_topic,
    status_topic,
)
from .mqtt import async_subscribe_json, async_subscribe_text
from .repairs import async_check_protocol, async_clear_auth_issue, async_raise_auth_issue
from .trust import UnverifiedServer, async_verify_server

if TYPE_CHECKING:
    from .models import EdgeInferenceConfigEntry


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the entities show: the server's info (or announce), status and stats."""

    info: dict[str, Any]
    online: bool = True
    stats: dict[str, Any] | None = field(default=None)

    @property
    def vision(self) -> dict[str, Any]:
        """The vision capability, or an empty dict."""
        vision = self.info.get("capabilities", {}).get("vision")
        return vision if isinstance(vision, dict) else {}

    @property
    def models(self) -> list[str]:
        """Names of every model the server serves, over all capabilities."""
        names: list[str] = []
        for capability in (self.info.get("capabilities") or {}).values():
            if isinstance(capability, dict):
                for model in capability.get("models") or []:
                    if isinstance(model, dict) and "name" in model:
                        names.append(str(model["name"]))
        return names

    @property
    def vision_labels(self) -> list[str]:
        """Labels of the default vision model (the first model if none is default)."""
        models = [m for m in self.vision.get("models") or [] if isinstance(m, dict)]
        default = self.vision.get("default_model")
        for model in models:
            if model.get("name") == default:
                return [str(label) for label in model.get("labels") or []]
        return [str(label) for label in models[0].get("labels") or []] if models else []

    @property
    def backends(self) -> dict[str, Any]:
        """Backend readiness: the latest stats, else the info/announce."""
        if self.stats and isinstance(self.stats.get("backends"), dict) and self.stats["backends"]:
            return dict(self.stats["backends"])
        backends = self.info.get("backends")
        return dict(backends) if isinstance(backends, dict) else {}


class EdgeInferenceCoordinator(DataUpdateCoordinator[ServerState]):
    """Fetches /info once (token check), then follows the server's MQTT topics."""

    config_entry: EdgeInferenceConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: EdgeInferenceConfigEntry, client: EdgeInferenceClient
    ) -> None:
        """Push-driven: no polling interval."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.data[CONF_SERVER_ID]}",
            update_interval=None,
        )
        self.client = client
        self.server_id: str = entry.data[CONF_SERVER_ID]
        # The server's device (made at setup): pipelines hang off it, announces rename it.
        self.server_device_id = ""
        # Pushed state is only as true as HA's connection to the broker.
        self.mqtt_connected = True
        # The token was rejected: reauth started once, requests with it stop.
        self.auth_failed = False

    async def _async_update_data(self) -> ServerState:
        try:
            # The entry's URL was proven when stored, but the host behind it may have changed.
            await async_verify_server(
                async_get_clientsession(self.hass),
                self.client.url,
                self.config_entry.data[CONF_API_TOKEN],
                self.server_id,
            )
            info = await self.client.async_info()
        except (InvalidAuth, UnverifiedServer) as err:
            async_raise_auth_issue(self.hass, self.config_entry)
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except CannotConnect as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err)},
            ) from err
        except EdgeInferenceError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="server_error",
                translation_placeholders={"error": str(err)},
            ) from err
        async_clear_auth_issue(self.hass, self.config_entry)
        async_check_protocol(self.hass, self.config_entry, info.get("protocol"))
        online = self.data.online if self.data else True
        stats = self.data.stats if self.data else None
        return ServerState(info=info, online=online, stats=stats)

    @property
    def online(self) -> bool:
        """Whether the server says it is online."""
        return self.data.online

    @callback
    def async_auth_failed(self) -> None:
        """The server rejected the token: one repair issue and one reauth flow, not one per
        request; the pipelines stop using the token until the entry reloads with a new one."""
        if self.auth_failed:
            return
        self.auth_failed = True
        LOGGER.warning("Edge inference server %s rejected the token", self.server_id)
        async_raise_auth_issue(self.hass, self.config_entry)
        self.config_entry.async_start_reauth(self.hass)
        self.async_update_listeners()

    @callback
    def _on_mqtt_connection(self, connected: bool) -> None:
        if connected == self.mqtt_connected:
            return
        self.mqtt_connected = connected
        if connected:
            LOGGER.info("MQTT is back: following %s again", self.server_id)
        else:
            LOGGER.warning("MQTT connection lost: %s's pushed state is unavailable", self.server_id)
        self.async_update_listeners()

    async def async_subscribe(self) -> list[CALLBACK_TYPE]:
        """Follow the broker connection, the server's retained status and announce, stats."""
        self.mqtt_connected = mqtt.is_connected(self.hass)
        return [
            mqtt.async_subscribe_connection_status(self.hass, self._on_mqtt_connection),
            await async_subscribe_text(self.hass, status_topic(self.server_id), self._on_status),
            await async_subscribe_json(
                self.hass, announce_topic(self.server_id), self._on_announce
            ),
            await async_subscribe_json(
                self.hass, stats_topic(self.server_id), self._on_stats, qos=0
            ),
        ]

    @callback
    def _on_status(self, payload: str) -> None:
        online = payload == "online"
        if online == self.data.online:
            return
        if online:
            LOGGER.info("Edge inference server %s is back online", self.server_id)
        else:
            LOGGER.info(
                "Edge inference server %s is offline; its entities are unavailable",
                self.server_id,
            )
        self.async_set_updated_data(replace(self.data, online=online))

    @callback
    def _on_announce(self, announce: dict[str, Any]) -> None:
        if announce.get("server_id") != self.server_id:
            return
        api = announce.get("api")
        url = api.get("url") if isinstance(api, dict) else None
        if isinstance(url, str) and url.rstrip("/") != self.client.url:
            # Another URL: unproven until the config flow checks it (and reloads the entry).
            return
        info = {key: value for key, value in announce.items() if key != "api"}
        async_check_protocol(self.hass, self.config_entry, info.get("protocol"))
        if self.server_device_id:
            # A no-op unless the server's name or version changed.
            dr.async_get(self.hass).async_update_device(
                self.server_device_id,
                name=str(info.get("name") or self.server_id),
                sw_version=str(info.get("version") or "") or None,
            )
        self.async_set_updated_data(replace(self.data, info=info))

    @callback
    def _on_stats(self, stats: dict[str, Any]) -> None:
        self.async_set_updated_data(replace(self.data, stats=stats))
