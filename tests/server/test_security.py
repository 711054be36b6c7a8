"""What a hostile LAN client or an untrusted broker can learn or reach (real server process)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.broker import make_certificates
from tests.helpers.server_process import ServerProcess

from .conftest import FIXTURES, TOKEN
from .test_cameras import CLIP, camera, poll_state, request

SECRET_SOURCE = "rtsp://admin:s3cretpw@127.0.0.1:9/stream?user=admin&password=hunter22&channel=1"


@pytest.fixture
def no_media_server(tmp_path: Path, model_repo: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path / "server", mqtt_port=None, token=TOKEN, model_repo=model_repo, media_root=None
    )
    proc.start()
    yield proc
    proc.stop()


async def test_local_files_are_refused_unless_a_media_root_allows_them(
    no_media_server: ServerProcess,
) -> None:
    for source in (CLIP, "file://" + CLIP, "/etc/hostname", "etc/hostname"):
        status, body, _ = await request(
            no_media_server, "PUT", "/api/v1/cameras/c1", camera(source=source)
        )
        assert (status, body["error"]["code"]) == (400, "source_not_allowed"), source
    assert (await request(no_media_server, "GET", "/api/v1/cameras"))[1]["cameras"] == []


async def test_a_media_root_allows_only_what_is_under_it(api_server: ServerProcess) -> None:
    # api_server's media root is tests/fixtures (tests/helpers/server_process.py)
    escape = str(FIXTURES / "video" / ".." / ".." / ".." / "pyproject.toml")
    for source in ("/etc/hostname", escape, "file:///etc/hostname"):
        status, body, _ = await request(
            api_server, "PUT", "/api/v1/cameras/c1", camera(source=source)
        )
        assert (status, body["error"]["code"]) == (400, "source_not_allowed"), source
    status, _, _ = await request(api_server, "PUT", "/api/v1/cameras/c1", camera())
    assert status == 201
    assert (await request(api_server, "DELETE", "/api/v1/cameras/c1"))[0] == 204


async def test_camera_credentials_never_come_back(server: ServerProcess) -> None:
    status, state, raw = await request(
        server, "PUT", "/api/v1/cameras/door", camera(source=SECRET_SOURCE)
    )
    assert status == 201
    failing = await poll_state(server, "door", lambda s: s["error"] is not None)
    listed = (await request(server, "GET", "/api/v1/cameras"))[2]
    for text in (raw.decode(), json.dumps(failing), listed.decode(), server.log()):
        assert "s3cretpw" not in text
        assert "hunter22" not in text
    assert "admin:***@" in state["source"]
    assert "password=***" in state["source"]
    assert "channel=1" in state["source"]
    saved = server.data_dir / "cameras.json"
    assert saved.stat().st_mode & 0o777 == 0o600  # it must keep the password to reconnect
    assert "s3cretpw" in saved.read_text()


async def test_health_tells_readiness_only(api_server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(api_server.url + "/api/v1/health") as resp,
    ):
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["backends"] == {"local": {"ready": True}}


def test_https_with_tls_cert_and_key(tmp_path: Path, model_repo: Path) -> None:
    ca_file = make_certificates(tmp_path)
    proc = ServerProcess(
        tmp_path / "server",
        mqtt_port=None,
        token=TOKEN,
        model_repo=model_repo,
        extra_args=[
            "--tls-cert",
            str(tmp_path / "server.pem"),
            "--tls-key",
            str(tmp_path / "server.key"),
        ],
    )
    proc.url = proc.url.replace("http://", "https://")
    proc.ssl_context = ssl.create_default_context(cafile=str(ca_file))
    # The throwaway test CA has no key-usage extension, which Python 3.13 checks by default.
    proc.ssl_context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    proc.start()
    try:
        request_ = urllib.request.Request(
            proc.url + "/api/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request_, context=proc.ssl_context, timeout=10) as resp:
            assert json.load(resp)["server_id"] == "test-server"
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(
                proc.url.replace("https://", "http://") + "/api/v1/health", timeout=5
            )
    finally:
        proc.stop()
