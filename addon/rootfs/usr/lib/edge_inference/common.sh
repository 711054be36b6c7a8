#!/usr/bin/env bash
# shellcheck shell=bash
# ==============================================================================
# Shared by the edge_inference and discovery services (sourced by bashio scripts).
# ==============================================================================
readonly SERVER_PORT=8765
# Wyoming speech-to-text for voice satellites (Wyoming's usual port; mapped in config.yaml).
# shellcheck disable=SC2034  # used by the run script that sources this file
readonly WYOMING_PORT=10300
readonly TOKEN_FILE=/data/token

# The API token: the user's option, else one generated on the first start and kept in
# /data (so it survives restarts, updates and backups, and the integration keeps working).
edge_inference::token() {
    if bashio::config.has_value 'token'; then
        bashio::config 'token'
        return
    fi
    if [[ ! -s "${TOKEN_FILE}" ]]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' \
            > "${TOKEN_FILE}")
    fi
    cat "${TOKEN_FILE}"
}

# The URL announced on MQTT and sent to Home Assistant: the user's option, else the
# add-on's hostname on the Supervisor's internal network, which Home Assistant resolves.
# Both discovery paths (MQTT announce, Supervisor discovery) must carry the same URL:
# the integration updates its entry whenever an announce shows a different one.
edge_inference::url() {
    local host
    if bashio::config.has_value 'advertise_url'; then
        bashio::config 'advertise_url'
        return
    fi
    host="$(bashio::addon.hostname)" || host=""
    echo "http://${host:-${HOSTNAME}}:${SERVER_PORT}"
}
