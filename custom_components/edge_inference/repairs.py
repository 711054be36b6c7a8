"""Repair issues: a server speaking another protocol, a token the server rejects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import (
    DOMAIN,
    ISSUE_AUTH,
    ISSUE_PROTOCOL,
    ISSUE_UNVERIFIED_URL,
    LOGGER,
    PROTOCOL_VERSION,
)

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry


def _issue_id(kind: str, entry: ConfigEntry[Any]) -> str:
    return f"{kind}_{entry.entry_id}"


@callback
def async_check_protocol(hass: HomeAssistant, entry: ConfigEntry[Any], protocol: Any) -> bool:
    """Raise (or clear) the protocol issue; return whether the protocol is spoken."""
    issue_id = _issue_id(ISSUE_PROTOCOL, entry)
    if protocol == PROTOCOL_VERSION:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
        return True
    LOGGER.warning(
        "Server %s speaks protocol %s; this integration speaks %s",
        entry.title,
        protocol,
        PROTOCOL_VERSION,
    )
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=ISSUE_PROTOCOL,
        translation_placeholders={
            "name": entry.title,
            "protocol": str(protocol),
            "supported": str(PROTOCOL_VERSION),
        },
    )
    return False


@callback
def async_raise_auth_issue(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """The server rejected the token: tell the user, beside the reauth flow."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        _issue_id(ISSUE_AUTH, entry),
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=ISSUE_AUTH,
        translation_placeholders={"name": entry.title},
    )


@callback
def async_clear_auth_issue(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """The token works (again)."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(ISSUE_AUTH, entry))


@callback
def async_raise_unverified_url_issue(
    hass: HomeAssistant, entry: ConfigEntry[Any], url: str
) -> None:
    """An announce moved the server to a URL whose server could not prove it holds the
    token: the entry stays where it was and the user hears about it."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        _issue_id(ISSUE_UNVERIFIED_URL, entry),
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_UNVERIFIED_URL,
        translation_placeholders={"name": entry.title, "url": url},
    )


@callback
def async_clear_unverified_url_issue(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """The server proved itself at its announced URL."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(ISSUE_UNVERIFIED_URL, entry))


@callback
def async_clear_issues(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """The entry is removed: remove its issues."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(ISSUE_AUTH, entry))
    ir.async_delete_issue(hass, DOMAIN, _issue_id(ISSUE_PROTOCOL, entry))
    ir.async_delete_issue(hass, DOMAIN, _issue_id(ISSUE_UNVERIFIED_URL, entry))
