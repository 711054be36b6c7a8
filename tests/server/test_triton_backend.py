"""TritonBackend against the real tritonserver binary (python backend running onnxruntime).

The model is the real default detector (install_default: YOLOv3-tiny converted to ONNX); the
reference is onnxruntime run in this process on the very same model.onnx.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from inference_server.backends.base import BackendError, Tensors, UnknownModelError
from inference_server.backends.local import LocalBackend
from inference_server.backends.triton import TritonBackend, parse_url
from inference_server.models.install_default import ONNX_MODEL, install_default_models
from tests.helpers.triton import TritonServer, make_triton_detector_repo, triton_available

pytestmark = pytest.mark.skipif(
    triton_available() is not None, reason=f"Triton cannot run here: {triton_available()}"
)

MODEL = ONNX_MODEL
OTHER = "detector-b"
IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@dataclass(frozen=True)
class Detector:
    local_repo: Path  # install_default's layout (onnxruntime_onnx), read by LocalBackend
    triton_repo: Path  # python-backend wrapper of the same model.onnx, served by Triton

    @property
    def onnx(self) -> Path:
        return self.local_repo / MODEL / "1" / "model.onnx"


@pytest.fixture(scope="session")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    local_repo = tmp_path_factory.mktemp("local_repo")
    install_default_models(local_repo)
    triton_repo = tmp_path_factory.mktemp("triton_repo")
    model_dir = local_repo / MODEL
    onnx, labels = model_dir / "1" / "model.onnx", model_dir / "labels.txt"
    make_triton_detector_repo(onnx, labels, triton_repo)
    # A second model whose labels travel in config.pbtxt (for a Triton without our repo).
    params = {"output_layout": "yolov5", "labels": "person, bicycle,car"}
    make_triton_detector_repo(onnx, labels, triton_repo, name=OTHER, parameters=params)
    return Detector(local_repo, triton_repo)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory, detector: Detector) -> Iterator[TritonServer]:
    server = TritonServer(tmp_path_factory.mktemp("triton"), detector.triton_repo)
    server.start()
    print(f"tritonserver ready in {server.start_seconds:.2f}s")  # shown with -s
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reference(detector: Detector) -> ort.InferenceSession:
    return ort.InferenceSession(str(detector.onnx), providers=["CPUExecutionProvider"])


@pytest.fixture(params=["grpc", "http"])
async def backend(
    request: pytest.FixtureRequest, triton: TritonServer, detector: Detector
) -> AsyncIterator[TritonBackend]:
    url = triton.grpc_url if request.param == "grpc" else triton.http_url
    backend = TritonBackend(url, local_repo=detector.triton_repo, recheck_s=0.5)
    await backend.start()
    yield backend
    await backend.stop()


def image_batch(size: int, seed: int = 0) -> Tensors:
    """A real photo first, then random images: [size, 3, 416, 416] float32 in 0..1."""
    photo = cv2.imread(str(IMAGES / "street_people.jpg"))
    assert photo is not None
    photo = cv2.cvtColor(cv2.resize(photo, (416, 416)), cv2.COLOR_BGR2RGB)
    first = photo.transpose(2, 0, 1).astype(np.float32)[None] / 255.0
    rest = np.random.default_rng(seed).random((size - 1, 3, 416, 416), dtype=np.float32)
    return {"images": np.concatenate([first, rest])}


def assert_same(got: Tensors, want: np.ndarray) -> None:
    assert set(got) == {"output"}
    assert got["output"].shape == want.shape
    # np.allclose semantics (rtol 1e-5): boxes are in pixels (up to ~600), beyond atol alone.
    np.testing.assert_allclose(got["output"].astype(np.float32), want, atol=1e-4, rtol=1e-5)


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > within:
            raise AssertionError(f"not {what} after {within}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def test_parse_url() -> None:
    assert parse_url("grpc://orin:8001") == ("grpc", "orin:8001", False)
    assert parse_url("http://orin") == ("http", "orin:8000", False)
    assert parse_url("https://user:pw@triton.lan:443") == ("http", "triton.lan:443", True)
    assert parse_url("orin:9001") == ("grpc", "orin:9001", False)
    assert parse_url("orin:9000", "http") == ("http", "orin:9000", False)
    with pytest.raises(ValueError, match="unsupported"):
        parse_url("ftp://orin")


async def test_ready_models_and_describe(backend: TritonBackend, triton: TritonServer) -> None:
    assert backend.ready
    assert backend.describe() == {"ready": True, "url": backend.url}
    assert backend.url in (triton.grpc_url, triton.http_url)
    config = backend.models()[MODEL]
    assert config.max_batch_size == 8
    assert config.dynamic_batching
    assert [(t.name, t.dtype, t.dims) for t in config.inputs] == [
        ("images", "float32", (3, 416, 416))
    ]
    assert [(t.name, t.dims) for t in config.outputs] == [("output", (-1, 85))]
    assert len(config.labels) == 80
    assert config.labels[0] == "person"
    assert config.parameters["output_layout"] == "yolov5"


@pytest.mark.parametrize("url_attr", ["grpc_url", "http_url"])
async def test_models_from_the_index_or_a_list(triton: TritonServer, url_attr: str) -> None:
    """No list: every READY model in Triton's index; labels from the `labels` parameter."""
    backend = TritonBackend(getattr(triton, url_attr))  # no local_repo: labels.txt unseen
    await backend.start()
    try:
        assert sorted(backend.models()) == sorted([MODEL, OTHER])
        assert backend.models()[OTHER].labels == ("person", "bicycle", "car")
        assert backend.models()[MODEL].labels == ()
    finally:
        await backend.stop()
    only = TritonBackend(getattr(triton, url_attr), models=[OTHER])
    await only.start()
    try:
        assert list(only.models()) == [OTHER]
        with pytest.raises(UnknownModelError):
            await only.infer(MODEL, image_batch(1))
    finally:
        await only.stop()


@pytest.mark.parametrize("batch", [1, 3])
async def test_infer_matches_onnxruntime(
    backend: TritonBackend, reference: ort.InferenceSession, batch: int
) -> None:
    inputs = image_batch(batch)
    got = await backend.infer(MODEL, inputs)
    (want,) = reference.run(["output"], inputs)
    assert got["output"].shape[0] == batch
    assert_same(got, want)
    got["output"][0, 0, 0] = 1.0  # outputs are ours to change (no read-only buffers)


async def test_concurrent_requests_batch_dynamically(
    backend: TritonBackend, reference: ort.InferenceSession
) -> None:
    """Concurrent requests are merged by Triton's dynamic batcher, then split back per request."""
    inputs = [image_batch(2, seed=i) for i in range(4)]
    results = await asyncio.gather(*(backend.infer(MODEL, x) for x in inputs))
    for x, got in zip(inputs, results, strict=True):
        assert_same(got, reference.run(["output"], x)[0])


async def test_float64_input_is_cast(
    backend: TritonBackend, reference: ort.InferenceSession
) -> None:
    inputs = image_batch(1)
    got = await backend.infer(MODEL, {"images": inputs["images"].astype(np.float64)})
    assert_same(got, reference.run(["output"], inputs)[0])


async def test_unknown_model_and_bad_input(backend: TritonBackend) -> None:
    with pytest.raises(UnknownModelError):
        await backend.infer("no-such-model", image_batch(1))
    with pytest.raises(BackendError, match="Triton failed on 'yolov3-tiny'") as err:
        await backend.infer(MODEL, {"images": np.zeros((1, 3, 32, 32), np.float32)})
    assert not isinstance(err.value, UnknownModelError)
    assert backend.ready  # a bad request says nothing about Triton's health


async def test_same_outputs_as_local_backend(backend: TritonBackend, detector: Detector) -> None:
    local = LocalBackend(detector.local_repo, providers=["CPUExecutionProvider"])
    await local.start()
    try:
        inputs = image_batch(3, seed=7)
        from_local = await local.infer(MODEL, inputs)
        assert_same(await backend.infer(MODEL, inputs), from_local["output"])
        assert backend.models()[MODEL].labels == local.models()[MODEL].labels
    finally:
        await local.stop()


async def test_down_slow_and_back(tmp_path: Path, detector: Detector) -> None:
    """Down at start, up, crashed, back, stopped, back, hung, resumed: we never restart."""
    server = TritonServer(tmp_path / "triton", detector.triton_repo)
    backend = TritonBackend(
        server.grpc_url, models=[MODEL], timeout_s=2.0, recheck_s=0.5, check_timeout_s=1.0
    )
    inputs = image_batch(1)
    try:
        await backend.start()  # Triton is not there yet: no exception, just not ready
        assert not backend.ready
        with pytest.raises(BackendError, match="not ready"):
            await backend.infer(MODEL, inputs)
        with pytest.raises(UnknownModelError):
            await backend.infer("other", inputs)

        await asyncio.to_thread(server.start)
        await wait_until(lambda: backend.ready, 10, "ready after Triton started")
        assert (await backend.infer(MODEL, inputs))["output"].shape[0] == 1

        await asyncio.to_thread(server.stop, sig=signal.SIGKILL)  # a crash: no goodbye
        await wait_until(lambda: not backend.ready, 5, "down after Triton crashed")
        assert backend.describe() == {"ready": False, "url": server.grpc_url}
        assert MODEL in backend.models()  # still ours, just not ready
        with pytest.raises(BackendError):
            await backend.infer(MODEL, inputs)

        await asyncio.to_thread(server.start)  # same ports
        await wait_until(lambda: backend.ready, 10, "ready after Triton restarted")
        assert (await backend.infer(MODEL, inputs))["output"].shape[0] == 1

        await asyncio.to_thread(server.stop)  # a clean shutdown
        await wait_until(lambda: not backend.ready, 5, "down after Triton stopped")
        await asyncio.to_thread(server.start)
        await wait_until(lambda: backend.ready, 10, "ready after Triton restarted")
        assert (await backend.infer(MODEL, inputs))["output"].shape[0] == 1

        server.pause()
        began = time.monotonic()
        with pytest.raises(BackendError, match="did not answer"):
            await backend.infer(MODEL, inputs)
        assert time.monotonic() - began < 3.0
        await wait_until(lambda: not backend.ready, 5, "down while Triton hangs")
        server.resume()
        await wait_until(lambda: backend.ready, 10, "ready after Triton resumed")
        assert (await backend.infer(MODEL, inputs))["output"].shape[0] == 1
    finally:
        await backend.stop()
        server.stop()
