"""The sensors HTTP contract on the real server: results, state, forecast, reset, bad input."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
import requests

from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post(
    server: ServerProcess, series: str, body: Any, *, raw: bytes | None = None, **params: str
) -> requests.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(
        f"{server.url}/api/v1/sensors/{series}/observations",
        data=data,
        params=params,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )


def daily_series(
    days: float, step_s: float = 300.0, end: float | None = None
) -> list[dict[str, float]]:
    end = end if end is not None else time.time()
    t = np.arange(end - days * 86400, end, step_s)
    rng = np.random.default_rng(7)
    v = 21 + 2 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 0.1, len(t))
    return [{"t": float(a), "v": round(float(b), 3)} for a, b in zip(t, v, strict=True)]


def error_code(response: requests.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


def test_one_result_per_observation_in_order_then_state_forecast_and_reset(
    api_server: ServerProcess,
) -> None:
    observations = daily_series(3)
    response = post(api_server, "sensor.living_room", {"observations": observations, "unit": "°C"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == len(observations)
    results = body["results"]
    assert [r["t"] for r in results] == [o["t"] for o in observations]
    last = results[-1]
    assert last["lower"] < last["expected"] < last["upper"]
    assert abs(last["expected"] - last["v"]) < 1.0  # it learned the daily curve
    assert 0.0 <= min(r["score"] for r in results) <= max(r["score"] for r in results) <= 1.0

    state = requests.get(
        f"{api_server.url}/api/v1/sensors/sensor.living_room",
        params={"horizon": "7200", "points": "4"},
        headers=AUTH,
        timeout=10,
    ).json()
    assert state["unit"] == "°C"
    assert state["observations"] == len(observations)
    assert state["model"]["daily_seasonality"] is True
    assert len(state["forecast"]) == 4
    for point in state["forecast"]:
        assert point["lower"] < point["v"] < point["upper"]
        assert 18.0 < point["v"] < 24.0

    listed = requests.get(f"{api_server.url}/api/v1/sensors", headers=AUTH, timeout=10).json()
    assert "sensor.living_room" in listed["series"]
    deleted = requests.delete(
        f"{api_server.url}/api/v1/sensors/sensor.living_room", headers=AUTH, timeout=10
    )
    assert deleted.status_code == 204
    gone = requests.get(
        f"{api_server.url}/api/v1/sensors/sensor.living_room", headers=AUTH, timeout=10
    )
    assert gone.status_code == 404
    assert error_code(gone) == "unknown_series"


def test_iso_8601_times_and_results_modes(api_server: ServerProcess) -> None:
    body = {
        "observations": [
            {"t": "2026-12-01T10:00:00+00:00", "v": 1.0},
            {"t": "2026-12-01T10:01:00", "v": 1.1},  # naive: UTC
            {"t": 1_796_119_320, "v": 1.2},  # 10:02:00 UTC as epoch seconds
        ]
    }
    response = post(api_server, "iso", body, results="none")
    assert response.status_code == 200, response.text
    assert "results" not in response.json()
    assert response.json()["state"]["last"]["t"] == 1_796_119_320
    later = {"observations": [{"t": "2026-12-01T10:03:00Z", "v": 1.3}]}
    assert post(api_server, "iso", later, results="anomalies").json()["results"] == []


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"observations": [{"t": 1764583200, "v": NaN}]}', 400, "invalid_value"),
        (b'{"observations": [{"t": 1764583200, "v": Infinity}]}', 400, "invalid_value"),
        (b'{"observations": [{"t": 1764583200, "v": "21.5"}]}', 400, "invalid_value"),
        (b'{"observations": [{"t": 1764583200, "v": true}]}', 400, "invalid_value"),
        (b'{"observations": [{"t": 1764583200, "v": 1e999999}]}', 400, "invalid_value"),
        (b'{"observations": [{"t": 1764583200}]}', 400, "invalid_observation"),
        (b'{"observations": [{"t": "yesterday", "v": 1}]}', 400, "invalid_timestamp"),
        (b'{"observations": [{"t": 1764583200000, "v": 1}]}', 400, "invalid_timestamp"),
        (b'{"observations": []}', 400, "invalid_body"),
        (b'{"values": [1, 2]}', 400, "invalid_body"),
        (b"[1, 2]", 400, "invalid_body"),
        (b"not json", 400, "invalid_json"),
        (b"[" * 100000, 400, "invalid_json"),
        (
            b'{"observations": [{"t": 1764583200, "v": 1}, {"t": 1764583100, "v": 1}]}',
            400,
            "out_of_order",
        ),
        (
            b'{"observations": [{"t": 1764583200, "v": 1}, {"t": 1764583200, "v": 2}]}',
            400,
            "duplicate_timestamp",
        ),
        (b'{"observations": [{"t": 1764583200, "v": 1}], "unit": 5}', 400, "invalid_unit"),
    ],
)
def test_bad_bodies_get_a_clear_400(
    api_server: ServerProcess, raw: bytes, status: int, code: str
) -> None:
    response = post(api_server, "bad.input", None, raw=raw)
    assert response.status_code == status, response.text
    assert error_code(response) == code


def test_conflicts_with_what_was_learned_are_409(api_server: ServerProcess) -> None:
    first = {"observations": [{"t": 1_764_583_200, "v": 5.0}], "unit": "W"}
    assert post(api_server, "sensor.power", first).status_code == 200
    # The same batch again (a client retrying after a lost answer): refused, nothing learned twice.
    again = post(api_server, "sensor.power", first)
    assert again.status_code == 409
    assert error_code(again) == "stale_observation"
    in_kw = post(
        api_server,
        "sensor.power",
        {"observations": [{"t": 1_764_583_300, "v": 0.005}], "unit": "kW"},
    )
    assert in_kw.status_code == 409
    assert error_code(in_kw) == "unit_mismatch"
    state = requests.get(f"{api_server.url}/api/v1/sensors/sensor.power", headers=AUTH, timeout=10)
    assert state.json()["observations"] == 1


def test_limits_and_parameters(api_server: ServerProcess) -> None:
    many = {"observations": [{"t": 1_764_583_200 + i, "v": 1} for i in range(100_001)]}
    too_many = post(api_server, "big", many)
    assert too_many.status_code == 413
    assert error_code(too_many) in ("too_many_observations", "payload_too_large")
    huge = post(
        api_server, "big", None, raw=b'{"observations": [' + b" " * (9 * 1024 * 1024) + b"]}"
    )
    assert huge.status_code == 413
    assert error_code(huge) == "payload_too_large"
    assert post(
        api_server, "bad id!", {"observations": [{"t": 1_764_583_200, "v": 1}]}
    ).status_code in (400, 404)
    assert (
        error_code(
            post(api_server, "x", {"observations": [{"t": 1_764_583_200, "v": 1}]}, results="some")
        )
        == "invalid_parameter"
    )
    assert post(api_server, "x", {"observations": [{"t": 1_764_583_200, "v": 1}]}).ok
    bad_horizon = requests.get(
        f"{api_server.url}/api/v1/sensors/x", params={"horizon": "-5"}, headers=AUTH, timeout=10
    )
    assert bad_horizon.status_code == 400
    no_token = requests.get(f"{api_server.url}/api/v1/sensors/x", timeout=10)
    assert no_token.status_code == 401


def test_a_gap_of_days_is_flagged_as_missing_data_and_relearned(api_server: ServerProcess) -> None:
    end = time.time() - 5 * 86400
    observations = daily_series(3, end=end)
    assert (
        post(api_server, "gappy", {"observations": observations}, results="none").status_code == 200
    )
    # Four days later the sensor comes back two degrees warmer.
    back = [{"t": end + 4 * 86400 + 300 * i, "v": observations[-1]["v"] + 2.0} for i in range(1, 4)]
    results = post(api_server, "gappy", {"observations": back}).json()["results"]
    assert results[0]["kind"] == "missing_data"
    assert not results[2]["anomaly"]  # the level was learned anew, not an alarm per reading


def test_batch_of_many_series_in_one_request(api_server: ServerProcess) -> None:
    t0 = 1_770_000_000
    first = {"series": {f"batch.s{k}": {"observations": [{"t": t0, "v": k}]} for k in range(3)}}
    url = f"{api_server.url}/api/v1/sensors/observations"
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = requests.post(url, data=json.dumps(first), headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert {k: v["accepted"] for k, v in answer.json()["series"].items()} == {
        "batch.s0": 1,
        "batch.s1": 1,
        "batch.s2": 1,
    }
    # s0 repeats its reading (a conflict of that series only); the others go on.
    second = {
        "series": {
            "batch.s0": {"observations": [{"t": t0, "v": 0}]},
            "batch.s1": {"observations": [{"t": t0 + 60, "v": 1}]},
        }
    }
    answer = requests.post(url, data=json.dumps(second), headers=headers, timeout=30).json()
    assert answer["series"]["batch.s0"]["error"]["code"] == "stale_observation"
    assert answer["series"]["batch.s1"]["results"][0]["t"] == t0 + 60
    # Bad input anywhere refuses the whole request: nothing is learned.
    bad = {
        "series": {
            "batch.s2": {"observations": [{"t": t0 + 60, "v": 2}]},
            "batch.s1": {"observations": [{"t": t0 + 120, "v": "x"}]},
        }
    }
    refused = requests.post(url, data=json.dumps(bad), headers=headers, timeout=30)
    assert refused.status_code == 400
    assert error_code(refused) == "invalid_value"
    state = requests.get(f"{api_server.url}/api/v1/sensors/batch.s2", headers=AUTH, timeout=10)
    assert state.json()["observations"] == 1
    not_series = requests.post(url, data=b'{"series": [1]}', headers=headers, timeout=30)
    assert error_code(not_series) == "invalid_body"


def test_metrics_count_observations_anomalies_and_series(api_server: ServerProcess) -> None:
    def metric(text: str, name: str) -> float:
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
        return sum(values)

    before = requests.get(f"{api_server.url}/metrics", headers=AUTH, timeout=10).text
    observations = daily_series(2, end=1_790_000_000)
    observations[-1]["v"] += 10.0  # a spike at the end
    assert post(api_server, "metrics.t", {"observations": observations}).ok
    after = requests.get(f"{api_server.url}/metrics", headers=AUTH, timeout=10).text
    added = metric(after, "edge_inference_sensor_observations_total") - metric(
        before, "edge_inference_sensor_observations_total"
    )
    assert added == len(observations)
    spikes = 'edge_inference_sensor_anomalies_total{kind="spike"}'
    assert metric(after, spikes) >= metric(before, spikes) + 1
    assert metric(after, "edge_inference_sensor_series ") >= 1
