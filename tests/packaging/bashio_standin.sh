# shellcheck shell=bash
# A STAND-IN for bashio (github.com/hassio-addons/bashio), sourced instead of the real library
# by the add-on tests: no Supervisor runs here, so this answers the few calls the add-on's
# scripts make, from files the test writes:
#   $OPTIONS_FILE    the add-on options, as the Supervisor writes /data/options.json
#   $SERVICES_FILE   the MQTT service data (`GET /services/mqtt`), absent = no broker
#   $DISCOVERY_OUT   where `bashio::discovery` records the message it would POST
#   $ADDON_HOSTNAME  this add-on's hostname on the Supervisor network
# Same shell options as the real bashio, so the scripts run under the same rules.
set -o errexit -o errtrace -o nounset -o pipefail

__standin_json() {  # FILE KEY -> value ("" when missing/null; booleans as true/false)
    "${PYTHON:-python3}" -c 'import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2])
except FileNotFoundError:
    v = None
print("" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"
}

bashio::config() { __standin_json "${OPTIONS_FILE}" "$1"; }
bashio::config.has_value() { [[ -n "$(bashio::config "$1")" ]]; }
bashio::services.available() { [[ -s "${SERVICES_FILE:-/nonexistent}" ]]; }
bashio::services() { __standin_json "${SERVICES_FILE}" "$2"; }
bashio::var.has_value() { [[ -n "$1" ]]; }
bashio::var.true() { [[ "$1" == "true" ]]; }
bashio::addon.hostname() { echo "${ADDON_HOSTNAME}"; }
bashio::log.info() { echo "INFO: $*" >&2; }
bashio::log.warning() { echo "WARNING: $*" >&2; }
bashio::log.error() { echo "ERROR: $*" >&2; }
bashio::var.json() {
    "${PYTHON:-python3}" -c 'import json, sys
a = sys.argv[1:]
print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"
}
bashio::discovery() {
    "${PYTHON:-python3}" -c 'import json, sys
json.dump({"service": sys.argv[1], "config": json.loads(sys.argv[2])}, open(sys.argv[3], "w"))' \
        "$1" "$2" "${DISCOVERY_OUT}"
}
