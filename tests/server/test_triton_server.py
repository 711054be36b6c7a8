"""The server with --backend triton, in front of the real tritonserver: same detections as
the local backend, and a clear 503 while Triton is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from inference_server.models.install_default import DEFAULT_MODEL
from tests.helpers.server_process import ServerProcess
from tests.helpers.triton import (
    TritonServer,
    make_triton_detector_repo,
    make_triton_python_model,
    triton_available,
)

from .conftest import TOKEN, image_bytes

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
IMAGES = ("street_people.jpg", "street_people_2.jpg", "coffee.jpg")

pytestmark = pytest.mark.skipif(triton_available() is not None, reason=str(triton_available()))


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[TritonServer]:
    repo = tmp_path_factory.mktemp("triton_repo")
    model_dir = model_repo / "yolov3-tiny"
    make_triton_detector_repo(model_dir / "1" / "model.onnx", model_dir / "labels.txt", repo)
    # The default detector too: its pre-processing parameters reach the pipeline from Triton's
    # own copy of config.pbtxt, so both backends must give the same boxes.
    make_triton_python_model(model_repo / DEFAULT_MODEL, repo)
    server = TritonServer(tmp_path_factory.mktemp("triton"), repo)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def triton_api(
    tmp_path_factory: pytest.TempPathFactory, triton: TritonServer, model_repo: Path
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("api-triton"),
        mqtt_port=None,
        model_repo=model_repo,
        extra_args=["--backend", "triton", "--triton-url", triton.grpc_url],
    )
    proc.start()
    yield proc
    proc.stop()


async def detect(
    server: ServerProcess, image: str, model: str = ""
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + f"/api/v1/vision/detect?model={model}",
            headers=HEADERS,
            data=image_bytes(image),
        ) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize("model", [DEFAULT_MODEL, "yolov3-tiny"])
@pytest.mark.parametrize("image", IMAGES)
async def test_triton_gives_the_same_detections_as_local(
    triton_api: ServerProcess, api_server: ServerProcess, image: str, model: str
) -> None:
    status_t, via_triton = await detect(triton_api, image, model)
    status_l, via_local = await detect(api_server, image, model)
    assert (status_t, status_l) == (200, 200), (via_triton, via_local)
    assert via_triton["model"] == via_local["model"] == model
    assert via_triton["detections"] == via_local["detections"]
    assert via_triton["detections"]


async def test_triton_down_is_503_and_comes_back(
    triton_api: ServerProcess, triton: TritonServer
) -> None:
    triton.stop()
    try:
        status, body = await detect(triton_api, "street_people.jpg")
        assert status == 503
        assert body["error"]["code"] == "backend_unavailable"  # type: ignore[index]
        async with (
            aiohttp.ClientSession() as session,
            session.get(triton_api.url + "/api/v1/health") as resp,
        ):
            assert resp.status == 503
            assert (await resp.json())["backends"]["triton"]["ready"] is False
    finally:
        triton.start()
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline and status != 200:
        status, _ = await detect(triton_api, "street_people.jpg")
    assert status == 200
