"""The whole product on one machine: broker, server, Home Assistant, a camera pipeline.

Run through `scripts/demo` (which sets up the venvs first). Everything is set up the way a user
would: HA is onboarded through its API, MQTT is added through its config flow, the server is
discovered on MQTT and confirmed with its token, and a camera pipeline is added as a subentry.
A `local_file` camera shows frames of a street clip that this script advances; the server
detects on them and HA's entities follow. Ctrl-C stops everything and removes the temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers.broker import (  # noqa: E402
    MosquittoBroker,
    free_port,
    mosquitto_binary,
    wait_for_port,
)
from tests.helpers.embedded_broker import EmbeddedBroker  # noqa: E402

CLIENT_ID = "http://127.0.0.1:8123/"
CLIPS = (
    Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    ROOT / "tests/fixtures/video/street.avi",
)
USER, PASSWORD = "demo", "demo-edge-inference"

CONFIGURATION = """\
homeassistant:
  name: Edge inference demo
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  allowlist_external_dirs: ["{work}"]
  auth_providers:
    - type: trusted_networks
      trusted_networks: [127.0.0.1/32]
      allow_bypass_login: true
    - type: homeassistant
http:
  server_host: 127.0.0.1
  server_port: {ha_port}
frontend:
config:
camera:
  - platform: local_file
    name: Demo street
    file_path: {frame}
logger:
  default: warning
  logs:
    custom_components.edge_inference: info
"""


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_broker(workdir: Path) -> MosquittoBroker | EmbeddedBroker:
    """Mosquitto when installed, else the embedded Python broker (amqtt)."""
    try:
        mosquitto_binary()
    except RuntimeError:
        log("Mosquitto is not installed: using the embedded Python broker (amqtt)")
        return EmbeddedBroker(workdir)
    return MosquittoBroker(workdir)


class Demo:
    def __init__(self, work: Path, ha_port: int, server_port: int) -> None:
        self.work = work
        self.ha_port, self.server_port = ha_port, server_port
        self.ha_url = f"http://127.0.0.1:{ha_port}"
        self.token = secrets.token_hex(16)
        self.frame = work / "camera.jpg"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.broker = make_broker(work / "broker")
        self.access_token = ""
        self.clip = cv2.VideoCapture(str(next(p for p in CLIPS if p.exists())))

    # -- processes -------------------------------------------------------------------------
    def start_processes(self) -> None:
        self.start_broker()
        self.start_server()
        self.start_home_assistant()

    def start_broker(self) -> None:
        self.broker.start()
        log(f"{type(self.broker).__name__} on 127.0.0.1:{self.broker.port}")

    def start_server(
        self, server_id: str = "demo", *, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        """Spawn a server; `wait=False` returns at once (bench/ha_latency.py times its announce)."""
        name = "server" if server_id == "demo" else f"server-{server_id}"
        proc = self._spawn(
            name,
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "inference_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.server_port),
                "--token",
                self.token,
                "--server-id",
                server_id,
                "--name",
                "Demo inference server",
                "--mqtt-host",
                "127.0.0.1",
                "--mqtt-port",
                str(self.broker.port),
                "--model-repo",
                str(ROOT / "model_repository"),
                "--data-dir",
                str(self.work / "server"),
                "--advertise-url",
                f"http://127.0.0.1:{self.server_port}",
                # Local clips are camera sources only under a media root (off by default).
                "--media-root",
                str(next((p.parent for p in CLIPS if p.exists()), ROOT / "tests/fixtures")),
            ],
        )
        if wait:
            wait_for_port(self.server_port, timeout=60)
            log(f"Server on http://127.0.0.1:{self.server_port} (token {self.token})")
        return proc

    def start_home_assistant(self) -> None:
        config = self.work / "ha"
        (config / "custom_components").mkdir(parents=True)
        ours = "custom_components/edge_inference"
        os.symlink(ROOT / ours, config / ours)
        (config / "configuration.yaml").write_text(self.configuration())
        self._spawn(
            "homeassistant",
            [
                # HA 2026.10 on Python 3.14, in the root `scripts/setup ha` builds.
                str(ROOT / "scripts/ha-run"),
                "/opt/ha-venv/bin/python",
                "-m",
                "homeassistant",
                "--config",
                str(config),
                "--skip-pip",
            ],
        )

    def configuration(self) -> str:
        """HA's configuration.yaml: the demo's camera home (a bench may bring its own)."""
        self.next_frame()  # local_file refuses a camera whose file does not exist yet
        return CONFIGURATION.format(work=self.work, ha_port=self.ha_port, frame=self.frame)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log_file = (self.work / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
        )
        return self.procs[-1]

    def stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        self.procs.remove(proc)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.broker.stop()

    # -- Home Assistant through its own API ------------------------------------------------
    async def set_up_home_assistant(self, session: aiohttp.ClientSession) -> None:
        await self.onboard(session)
        await self.add_mqtt(session)
        started = time.monotonic()
        discovery = await self._wait_for_discovery(session)
        log(
            f"Discovered {discovery['context'].get('title_placeholders', {})} "
            f"in {time.monotonic() - started:.1f}s; confirming with the token"
        )
        entry_id = await self.confirm_discovery(session, discovery["flow_id"])
        await asyncio.sleep(2)
        await self.add_camera_pipeline(
            session,
            entry_id,
            {
                "camera_entity_id": "camera.demo_street",
                "labels": ["person", "car"],
                "min_score": 0.4,
                "mode": "snapshot",
                "interval": 2,
                "fps": 2,
                "clear_after": 10,
            },
        )
        log("Camera pipeline added for camera.demo_street (snapshot mode, every 2 s)")

    async def onboard(self, session: aiohttp.ClientSession) -> None:
        await self._wait_for_ha(session)
        async with session.post(
            f"{self.ha_url}/api/onboarding/users",
            json={
                "client_id": CLIENT_ID,
                "name": "Demo",
                "username": USER,
                "password": PASSWORD,
                "language": "en",
            },
        ) as resp:
            auth_code = (await resp.json())["auth_code"]
        async with session.post(
            f"{self.ha_url}/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": auth_code,
                "client_id": CLIENT_ID,
            },
        ) as resp:
            self.access_token = (await resp.json())["access_token"]
        for step, body in (
            ("core_config", {}),
            ("analytics", {}),
            ("integration", {"client_id": CLIENT_ID, "redirect_uri": CLIENT_ID}),
        ):
            await self.api(session, "POST", f"/api/onboarding/{step}", body)
        await self.keep_http_config(session)
        log(f"Home Assistant onboarded (user {USER!r}, password {PASSWORD!r})")

    async def keep_http_config(self, session: aiohttp.ClientSession) -> None:
        """Confirm the `http:` settings above, as a user does once HA answers on them.

        HA 2026.10 tries YAML HTTP settings as a pending config and, unless it is promoted
        within 5 minutes, restarts Home Assistant on the previous one (port 8123)."""
        async with await self.open_websocket(session) as ws:
            await ws.send_json({"id": 1, "type": "http/config/promote"})
            answer = await ws.receive_json()
        # Older HA has no such command; nothing pending (a restart of the demo) is fine too.
        if not answer.get("success"):
            log(f"HTTP config not promoted: {answer.get('error', {}).get('message')}")

    async def add_mqtt(self, session: aiohttp.ClientSession) -> None:
        path = "/api/config/config_entries/flow"
        flow = await self.api(session, "POST", path, {"handler": "mqtt"})
        result = await self.api(
            session,
            "POST",
            f"{path}/{flow['flow_id']}",
            {
                "broker": "127.0.0.1",
                "port": self.broker.port,
                # HA 2026.10's broker step refuses a body without its "other_settings" section.
                "other_settings": {
                    "set_client_cert": False,
                    "set_ca_cert": "off",
                    "transport": "tcp",
                },
            },
        )
        assert result["type"] == "create_entry", result
        log("MQTT integration set up; waiting for the server's announce to be discovered")

    async def confirm_discovery(self, session: aiohttp.ClientSession, flow_id: str) -> str:
        """Give the discovered server's flow its token; returns the new entry's id."""
        result = await self.api(
            session, "POST", f"/api/config/config_entries/flow/{flow_id}", {"api_token": self.token}
        )
        assert result["type"] == "create_entry", result
        return str(result["result"]["entry_id"])

    async def add_camera_pipeline(
        self, session: aiohttp.ClientSession, entry_id: str, data: dict[str, Any]
    ) -> None:
        path = "/api/config/config_entries/subentries/flow"
        sub = await self.api(
            session, "POST", path, {"handler": [entry_id, "camera"], "show_advanced_options": False}
        )
        result = await self.api(session, "POST", f"{path}/{sub['flow_id']}", data)
        assert result["type"] == "create_entry", result

    async def _wait_for_ha(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a process exited; see the logs in {self.work}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.ha_url}/api/onboarding") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(1)
        raise TimeoutError(f"Home Assistant did not start; see {self.work / 'homeassistant.log'}")

    async def _wait_for_discovery(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        # Flows in progress are listed only over the websocket API.
        async with await self.open_websocket(session) as ws:
            for message_id in range(1, 240):
                await ws.send_json({"id": message_id, "type": "config_entries/flow/progress"})
                for flow in (await ws.receive_json())["result"]:
                    if flow["handler"] == "edge_inference":
                        return dict(flow)
                await asyncio.sleep(0.25)
        raise TimeoutError("edge_inference was not discovered over MQTT")

    async def open_websocket(
        self, session: aiohttp.ClientSession
    ) -> aiohttp.ClientWebSocketResponse:
        """HA's websocket API, authenticated."""
        ws = await session.ws_connect(f"{self.ha_url}/api/websocket")
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": self.access_token})
        if (await ws.receive_json())["type"] != "auth_ok":
            raise RuntimeError("Home Assistant refused the websocket login")
        return ws

    async def api(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.access_token}"}
        async with session.request(method, self.ha_url + path, json=body, headers=headers) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    # -- the camera and what HA sees ---------------------------------------------------------
    def next_frame(self) -> None:
        """Show the clip's next frame on the local_file camera (atomically), looping."""
        ok, frame = self.clip.read()
        if not ok:
            self.clip.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.clip.read()
        tmp = self.frame.with_suffix(".tmp.jpg")
        cv2.imwrite(str(tmp), frame)
        os.replace(tmp, self.frame)

    async def play_clip(self) -> None:
        while True:
            self.next_frame()
            await asyncio.sleep(0.2)

    async def integration_entities(self, session: aiohttp.ClientSession) -> set[str]:
        """Entity ids of this integration, from HA's entity registry."""
        ws = await self.open_websocket(session)
        try:
            await ws.send_json({"id": 1, "type": "config/entity_registry/list"})
            entries = (await ws.receive_json())["result"]
        finally:
            await ws.close()
        return {e["entity_id"] for e in entries if e["platform"] == "edge_inference"}

    async def report(self, session: aiohttp.ClientSession) -> None:
        """Print the integration's entities whenever their state changes."""
        seen: dict[str, str] = {}
        ours = await self.integration_entities(session)
        while True:
            states = await self.api(session, "GET", "/api/states")
            for state in states:
                entity_id = state["entity_id"]
                if entity_id not in ours or entity_id.startswith("image."):
                    continue
                if seen.get(entity_id) != state["state"]:
                    seen[entity_id] = state["state"]
                    log(f"{entity_id} = {state['state']}")
            await asyncio.sleep(1)


async def run(demo: Demo) -> None:
    demo.start_processes()
    async with aiohttp.ClientSession() as session:
        await demo.set_up_home_assistant(session)
        log(f"Open {demo.ha_url} (logged in automatically from this machine). Ctrl-C to stop.")
        await asyncio.gather(demo.play_clip(), demo.report(session))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ha-port", type=int, default=8123)
    parser.add_argument("--server-port", type=int, default=free_port())
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edge-inference-demo-"))
    demo = Demo(work, args.ha_port, args.server_port)
    log(f"Working in {work} (logs: server.log, homeassistant.log)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout`/kill: clean up too
    try:
        asyncio.run(run(demo))
    except KeyboardInterrupt:
        log("Stopping")
    finally:
        demo.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
