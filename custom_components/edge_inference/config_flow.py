"""Config flow: MQTT and add-on discovery, manual setup, reauth and reconfigure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import probatio as vol
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
)
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

from .client import CannotConnect, EdgeInferenceClient, EdgeInferenceError, InvalidAuth
from .const import (
    CONF_SERVER_ID,
    DOMAIN,
    LOGGER,
    PROTOCOL_VERSION,
    SUBENTRY_AI_TASK,
    SUBENTRY_CAMERA,
    SUBENTRY_CONVERSATION,
)
from .llm_subentry_flow import LlmAgentSubentryFlow
from .repairs import async_clear_unverified_url_issue, async_raise_unverified_url_issue
from .sensor_pipeline import SUBENTRY_SENSORS
from .sensor_pipeline_flow import SensorPipelineSubentryFlow
from .subentry_flow import CameraSubentryFlow
from .trust import UnverifiedServer, async_verify_server, async_verify_server_retrying

TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
CONNECTION_SCHEMA = vol.Schema(
    {vol.Required(CONF_URL): URL_SELECTOR, vol.Required(CONF_API_TOKEN): TOKEN_SELECTOR}
)
TOKEN_SCHEMA = vol.Schema({vol.Required(CONF_API_TOKEN): TOKEN_SELECTOR})


async def async_validate(hass: HomeAssistant, url: str, token: str) -> dict[str, Any]:
    """Test the connection and the token; return the server's /info."""
    client = EdgeInferenceClient(async_get_clientsession(hass), url, token)
    info = await client.async_info()
    if not isinstance(info.get("server_id"), str):
        raise CannotConnect("the server's info has no server_id")
    return info


def _errors_for(err: EdgeInferenceError) -> dict[str, str]:
    if isinstance(err, UnverifiedServer):
        return {"base": "unverified_server"}
    if isinstance(err, InvalidAuth):
        return {"base": "invalid_auth"}
    if isinstance(err, CannotConnect):
        return {"base": "cannot_connect"}
    return {"base": "unknown"}


class EdgeInferenceConfigFlow(ConfigFlow, domain=DOMAIN):
    """Find and set up an inference server."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing discovered."""
        self._url: str | None = None
        self._name: str | None = None
        self._token: str | None = None

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """One subentry per camera pipeline."""
        return {
            SUBENTRY_CAMERA: CameraSubentryFlow,
            SUBENTRY_SENSORS: SensorPipelineSubentryFlow,
            SUBENTRY_CONVERSATION: LlmAgentSubentryFlow,
            SUBENTRY_AI_TASK: LlmAgentSubentryFlow,
        }

    async def _async_try(
        self, url: str, token: str, server_id: str | None = None
    ) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """Test a URL and token; the token goes there only after the server's proof."""
        try:
            await async_verify_server(async_get_clientsession(self.hass), url, token, server_id)
            return await async_validate(self.hass, url, token), {}
        except EdgeInferenceError as err:
            LOGGER.debug("Testing %s failed: %s", url, err)
            return None, _errors_for(err)
        except Exception:
            LOGGER.exception("Unexpected error while testing %s", url)
            return None, {"base": "unknown"}

    def _create(self, info: dict[str, Any], url: str, token: str) -> ConfigFlowResult:
        return self.async_create_entry(
            title=str(info.get("name") or info["server_id"]),
            data={CONF_URL: url, CONF_API_TOKEN: token, CONF_SERVER_ID: info["server_id"]},
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Manual setup: URL and token."""
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_URL].rstrip("/")
            info, errors = await self._async_try(url, user_input[CONF_API_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info["server_id"])
                self._abort_if_unique_id_configured(updates={CONF_URL: url})
                return self._create(info, url, user_input[CONF_API_TOKEN])
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                CONNECTION_SCHEMA,
                user_input,
            ),
            errors=errors,
        )

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """A server announced itself on `edge_inference/<id>/announce`."""
        try:
            announce = json.loads(discovery_info.payload)
            server_id = announce["server_id"]
            url = str(announce["api"]["url"]).rstrip("/")
        except (ValueError, KeyError, TypeError):
            return self.async_abort(reason="invalid_discovery_info")
        if not isinstance(server_id, str) or not discovery_info.topic.endswith(
            f"/{server_id}/announce"
        ):
            return self.async_abort(reason="invalid_discovery_info")
        await self.async_set_unique_id(server_id)
        if entry := self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, server_id):
            return await self._async_follow_announce(entry, url)
        if announce.get("protocol") != PROTOCOL_VERSION:
            return self.async_abort(reason="unsupported_protocol")
        self._url = url
        self._name = str(announce.get("name") or server_id)
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_discovery_confirm()

    async def _async_follow_announce(self, entry: ConfigEntry, url: str) -> ConfigFlowResult:
        """A known server announced a URL: move the entry there once the server proves it
        holds the entry's token; a URL that fails the proof gets a repair issue instead."""
        if entry.data[CONF_URL] != url:
            try:
                await async_verify_server_retrying(
                    async_get_clientsession(self.hass),
                    url,
                    entry.data[CONF_API_TOKEN],
                    entry.data[CONF_SERVER_ID],
                )
            except UnverifiedServer as err:
                LOGGER.warning("Not moving %s to %s: %s", entry.title, url, err)
                async_raise_unverified_url_issue(self.hass, entry, url)
                return self.async_abort(reason="unverified_server")
            except EdgeInferenceError as err:
                LOGGER.warning("Not moving %s to %s: %s", entry.title, url, err)
                return self.async_abort(reason="cannot_connect")
            async_clear_unverified_url_issue(self.hass, entry)
        # Proven (or unchanged): follow it (a changed URL reloads the entry).
        self._abort_if_unique_id_configured(updates={CONF_URL: url})
        return self.async_abort(reason="already_configured")  # pragma: no cover

    async def async_step_discovery_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The user confirms a discovered server and gives its token."""
        assert self._url is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._async_try(
                self._url, user_input[CONF_API_TOKEN], self.unique_id
            )
            if info is not None:
                if info["server_id"] != self.unique_id:
                    return self.async_abort(reason="wrong_server")
                return self._create(info, self._url, user_input[CONF_API_TOKEN])
        return self.async_show_form(
            step_id="discovery_confirm",
            data_schema=TOKEN_SCHEMA,
            description_placeholders={"name": str(self._name), "url": self._url},
            errors=errors,
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The add-on announced itself through the Supervisor (with its token)."""
        config = discovery_info.config
        try:
            url = str(config.get(CONF_URL) or f"http://{config['host']}:{config['port']}")
            token = str(config["token"])
        except KeyError:
            return self.async_abort(reason="invalid_discovery_info")
        info, errors = await self._async_try(url.rstrip("/"), token)
        if info is None:
            return self.async_abort(reason=errors["base"])
        await self.async_set_unique_id(info["server_id"])
        self._abort_if_unique_id_configured(updates={CONF_URL: url, CONF_API_TOKEN: token})
        self._url, self._token = url.rstrip("/"), token
        self._name = str(info.get("name") or discovery_info.name)
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The user confirms the add-on's server."""
        assert self._url is not None
        assert self._token is not None
        if user_input is not None:
            info, errors = await self._async_try(self._url, self._token)
            if info is None:
                return self.async_abort(reason=errors["base"])
            return self._create(info, self._url, self._token)
        return self.async_show_form(
            step_id="hassio_confirm", description_placeholders={"name": str(self._name)}
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The server rejected the token."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new token."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._async_try(entry.data[CONF_URL], user_input[CONF_API_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info["server_id"])
                self._abort_if_unique_id_mismatch(reason="wrong_server")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_API_TOKEN: user_input[CONF_API_TOKEN]}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=TOKEN_SCHEMA,
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the URL or the token of a configured server."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_URL].rstrip("/")
            info, errors = await self._async_try(url, user_input[CONF_API_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info["server_id"])
                self._abort_if_unique_id_mismatch(reason="wrong_server")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_URL: url, CONF_API_TOKEN: user_input[CONF_API_TOKEN]}
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                CONNECTION_SCHEMA,
                user_input or {CONF_URL: entry.data[CONF_URL]},
            ),
            errors=errors,
        )
