"""The dynamic batcher's contract, and the 503 a full queue gives on the real server."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from inference_server.backends.base import BackendError, Tensors
from inference_server.batching import BatcherClosedError, DynamicBatcher, QueueFullError
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN, image_bytes


def sample(value: float) -> Tensors:
    return {"x": np.full((1, 2), value, dtype=np.float32)}


async def test_concurrent_samples_share_one_call_and_get_their_own_rows() -> None:
    calls: list[int] = []

    async def run(inputs: Tensors) -> Tensors:
        calls.append(inputs["x"].shape[0])
        await asyncio.sleep(0.01)
        return {"y": inputs["x"] * 10}

    batcher = DynamicBatcher(run, max_batch=4, max_delay_s=0.05, max_queue=16)
    results = await asyncio.gather(*(batcher.submit(sample(i)) for i in range(6)))
    await batcher.close()
    assert calls == [4, 2]
    for i, (outputs, queued) in enumerate(results):
        assert outputs["y"].tolist() == [[i * 10, i * 10]]
        assert queued >= 0


async def test_without_batching_each_sample_runs_alone() -> None:
    calls: list[int] = []

    async def run(inputs: Tensors) -> Tensors:
        calls.append(inputs["x"].shape[0])
        return inputs

    batcher = DynamicBatcher(run, max_batch=1, max_delay_s=0.0, max_queue=16)
    await asyncio.gather(*(batcher.submit(sample(i)) for i in range(3)))
    await batcher.close()
    assert calls == [1, 1, 1]


async def test_a_full_queue_refuses_instead_of_growing() -> None:
    release = asyncio.Event()

    async def run(inputs: Tensors) -> Tensors:
        await release.wait()
        return inputs

    batcher = DynamicBatcher(run, max_batch=1, max_delay_s=0.0, max_queue=2)
    running = [asyncio.create_task(batcher.submit(sample(0)))]
    await asyncio.sleep(0.05)  # the worker holds the first one
    running += [asyncio.create_task(batcher.submit(sample(i))) for i in (1, 2)]
    await asyncio.sleep(0.05)  # two queued: the queue is full
    with pytest.raises(QueueFullError):
        await batcher.submit(sample(9))
    release.set()
    assert len(await asyncio.gather(*running)) == 3
    await batcher.close()


async def test_a_backend_error_reaches_every_caller_and_the_batcher_goes_on() -> None:
    fail = True

    async def run(inputs: Tensors) -> Tensors:
        if fail:
            raise BackendError("triton is down")
        return inputs

    batcher = DynamicBatcher(run, max_batch=4, max_delay_s=0.02, max_queue=8)
    results = await asyncio.gather(
        *(batcher.submit(sample(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results)
    fail = False
    outputs, _ = await batcher.submit(sample(5))
    assert outputs["x"].tolist() == [[5, 5]]
    await batcher.close()


async def test_closing_answers_every_caller_in_flight_or_queued() -> None:
    started = asyncio.Event()

    async def run(inputs: Tensors) -> Tensors:
        started.set()
        await asyncio.sleep(60)  # a backend call that would outlive the server
        return inputs

    batcher = DynamicBatcher(run, max_batch=1, max_delay_s=0.0, max_queue=8)
    callers = [asyncio.create_task(batcher.submit(sample(i))) for i in range(3)]
    await started.wait()  # one in flight, two queued
    await batcher.close()
    async with asyncio.timeout(5):  # before the fix the one in flight waited forever
        results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, BatcherClosedError) for r in results), results
    with pytest.raises(BatcherClosedError):
        await batcher.submit(sample(9))


async def test_full_queue_is_503_with_retry_after(tmp_path, model_repo) -> None:  # type: ignore[no-untyped-def]
    proc = ServerProcess(
        tmp_path,
        mqtt_port=None,
        model_repo=model_repo,
        extra_args=["--max-queue", "1", "--batching", "false"],
    )
    proc.start()
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
        data = image_bytes("street_people.jpg")
        async with aiohttp.ClientSession() as session:

            async def one() -> tuple[int, str | None, dict[str, object]]:
                async with session.post(
                    proc.url + "/api/v1/vision/detect", headers=headers, data=data
                ) as r:
                    return r.status, r.headers.get("Retry-After"), await r.json()

            results = await asyncio.gather(*(one() for _ in range(16)))
            refused = [r for r in results if r[0] == 503]
            assert refused, [r[0] for r in results]
            assert all(r[1] == "1" and r[2]["error"]["code"] == "queue_full" for r in refused)  # type: ignore[index]
            assert {r[0] for r in results} <= {200, 503}
            assert (await one())[0] == 200  # and it keeps serving
    finally:
        proc.stop()
