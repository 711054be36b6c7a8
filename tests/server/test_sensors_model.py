"""The online model alone, where a property is about the model and not the HTTP path."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from inference_server.pipelines.sensors import model

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
START = 1_780_000_000.0 - 1_780_000_000.0 % DAY  # midnight UTC: readings on the hour


def usual(t: np.ndarray) -> np.ndarray:
    return -18.0 + np.sin(2 * np.pi * (t / DAY - 0.3))


def test_hourly_readings_learn_the_whole_daily_curve() -> None:
    """A week of hourly means (what HA's long-term statistics give a warm start): the expected
    value between the hours follows the curve too, not only at the hours that had readings."""
    t = START + 1800 + 3600 * np.arange(7 * 24, dtype=np.float64)
    params = model.ModelParams().as_array()
    state = model.new_state()
    model.update(state, t, usual(t), params)
    # The next day, every 10 minutes: most of these times of day never had a reading.
    later = t[-1] + 600 * np.arange(1, 6 * 24 + 1, dtype=np.float64)
    expected = model.expected_at(state, later, params)[:, 0]
    worst = float(np.max(np.abs(expected - usual(later))))
    assert worst < 0.5, f"expected value off the daily curve by up to {worst:.2f}"
    assert math.isfinite(worst)


def _noisy_days(days: float, seed: int, every_s: float = 600.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = START + every_s * np.arange(int(days * DAY / every_s), dtype=np.float64)
    return t, usual(t) + rng.normal(0.0, 0.1, len(t))


def _score_of_next(state: np.ndarray, t: float, v: float) -> tuple[float, int]:
    out = model.update(state, np.array([t]), np.array([v]), model.ModelParams().as_array())
    return float(out[0, model.OUT_SCORE]), int(out[0, model.OUT_KIND])


def test_score_is_rarity_against_the_history_length() -> None:
    """The score says how rare a reading is in this sensor's own history, per day: the same
    new high rates higher after two months than after three days, and a usual reading stays
    near 0. Rarity needs days of history to be sure of, so more history, more certainty."""
    scores = []
    for days in (3.0, 60.0):
        t, v = _noisy_days(days, seed=1)
        state = model.new_state()
        model.update(state, t, v, model.ModelParams().as_array())
        high = float(v.max()) + 0.05  # just past every reading seen, not a big jump
        scores.append(_score_of_next(state, t[-1] + 600, high)[0])
        usual_score, usual_kind = _score_of_next(state, t[-1] + 1200, float(usual(t[-1] + 1200)))
        assert usual_score < 0.2
        assert usual_kind == model.KIND_NONE
    assert 0.0 < scores[0] < scores[1]
    assert scores[1] > 0.5, scores  # the highest in 60 days: rarer than one in 10 days


def test_heavy_tailed_sensor_learns_its_spikes_are_usual() -> None:
    """A sensor that spikes every few hours (a power meter, a count): after weeks of it, one
    more spike of the usual size is not rare, so its score stays well below an alarm, while
    the same spike on a quiet sensor is."""
    t, v = _noisy_days(30.0, seed=2)
    spiky = v.copy()
    spiky[::25] += 3.0  # about every 4 hours
    results = []
    for series in (v, spiky):
        state = model.new_state()
        model.update(state, t, series, model.ModelParams().as_array())
        at = t[-1] + 600
        results.append(_score_of_next(state, at, float(usual(at)) + 3.0)[0])
    quiet, spiking = results
    assert quiet > 0.5
    assert spiking < 0.3, spiking


def test_a_flagged_reading_scores_at_least_one_half() -> None:
    """Flag and score agree about alarms: a spike flagged on a short history (where rarity
    cannot yet be sure) still scores 0.5 or more."""
    t, v = _noisy_days(1.0, seed=3)
    state = model.new_state()
    model.update(state, t, v, model.ModelParams().as_array())
    at = t[-1] + 600
    score, kind = _score_of_next(state, at, float(usual(at)) + 5.0)
    assert kind == model.KIND_SPIKE
    assert score >= 0.5


def test_a_reading_further_out_of_range_scores_higher() -> None:
    """Two new records after the same week: each is the highest reading ever, so rarity alone
    rates them alike; the one far outside the usual range scores higher (a freezer at +20 C
    is worse than one at -10 C), and both are alarms."""
    t, v = _noisy_days(7.0, seed=4)
    at = t[-1] + 600
    scores = []
    for jump in (2.0, 20.0):  # the daily swing is 2: 2 is just past it, 20 far beyond
        state = model.new_state()
        model.update(state, t, v, model.ModelParams().as_array())
        score, kind = _score_of_next(state, at, float(usual(at)) + jump)
        assert kind != model.KIND_NONE
        scores.append(score)
    near, far = scores
    assert 0.5 <= near < far, scores
    assert far > 0.7, scores


def test_a_recurring_peak_scores_by_its_rarity_not_its_distance() -> None:
    """A sensor that jumps to the same far-off value every two weeks or so (a pump's monthly
    run): the first jump is a record, far outside the usual range, and scores high; once such
    jumps have been seen, the next one scores by how rare it is (four times in two months),
    not by how far it is from the usual range, which is as far as the first."""
    t, v = _noisy_days(60.0, seed=5)
    peak = 20.0  # the usual range is -19..-17
    v[np.arange(300, len(v), 2000)] = peak  # every 14 days, 10-minute readings
    state = model.new_state()
    out = model.update(state, t, v, model.ModelParams().as_array())
    first = float(out[300, model.OUT_SCORE])
    later, kind = _score_of_next(state, t[-1] + 600, peak)
    assert first > 0.8, first
    assert 0.5 <= later < 0.75, later  # still an alarm: rarer than one in 10 days
    assert kind == model.KIND_SPIKE


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spikes_coming_far_more_often_are_a_pattern_anomaly(seed: int) -> None:
    """A water meter every 5 minutes: idle, with a draw of 6-9 L/min about 12 times a day.
    For 4 hours a draw comes every 15 minutes (a cistern refilling): no reading is unusual,
    as draws that size come daily, but the stretch of readings is unlike any before. It is
    flagged as a pattern anomaly within the 4 hours; the same hours without the leak are not."""
    rng = np.random.default_rng(seed)
    every = 300.0
    t = START + every * np.arange(int(14 * DAY / every), dtype=np.float64)
    v = np.abs(rng.normal(0.0, 0.05, len(t)))
    draws = rng.random(len(t)) < 12 / (DAY / every)
    v[draws] = rng.uniform(6.0, 9.0, int(draws.sum()))
    leak = (t >= START + 11.3 * DAY) & (t < START + 11.3 * DAY + 4 * 3600)
    leaking = v.copy()
    every_15_min = np.flatnonzero(leak)[::3]
    leaking[every_15_min] = rng.uniform(6.0, 9.0, len(every_15_min))
    params = model.ModelParams().as_array()
    quiet = model.update(model.new_state(), t, v, params)
    out = model.update(model.new_state(), t, leaking, params)
    starts = (out[:, model.OUT_EVENT] == model.EVENT_START) & leak
    assert model.KIND_PATTERN in out[starts, model.OUT_KIND], out[leak, model.OUT_SCORE].max()
    assert not np.any(quiet[leak, model.OUT_KIND] == model.KIND_PATTERN)
    assert quiet[leak, model.OUT_SCORE].max() < 0.5


def _ar1_temperature(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = START + 300 * np.arange(int(30 * DAY / 300), dtype=np.float64)
    wander = np.zeros(len(t))
    for i in range(1, len(t)):
        wander[i] = 0.98 * wander[i - 1] + rng.normal(0.0, 0.1)
    return t, 20 + 2 * np.sin(2 * np.pi * t / DAY) + wander


def _counts(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = START + 300 * np.arange(int(30 * DAY / 300), dtype=np.float64)
    return t, rng.poisson(5 + 4 * np.sin(2 * np.pi * t / DAY)).astype(np.float64)


def _reported_on_change(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Irregular times and 0.1-degree steps, like HA's state changes of a thermometer."""
    t = np.sort(START + rng.uniform(0.0, 30 * DAY, 6000))
    return t, np.round(20 + 3 * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, 0.2, len(t)), 1)


@pytest.mark.parametrize("series", [_ar1_temperature, _counts, _reported_on_change])
def test_ordinary_sensors_start_no_pattern_anomaly(
    series: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
) -> None:
    """A month of a wandering temperature, of counts, of a thermometer reporting on change:
    every stretch of readings is like earlier ones, so after the first days no pattern
    anomaly starts (the rarity is per day of history, the bar one in 10 days)."""
    t, v = series(np.random.default_rng(1))
    out = model.update(model.new_state(), t, v, model.ModelParams().as_array())
    starts = (out[:, model.OUT_EVENT] == model.EVENT_START) & (t > START + 3 * DAY)
    assert not np.any(out[starts, model.OUT_KIND] == model.KIND_PATTERN)


def test_patterns_start_again_when_readings_come_far_more_often() -> None:
    """A warm start from HA's hourly means that goes on with every state change: a stretch of
    32 hours is no pattern of 32 minutes, so the pattern block (its kept stretches and its
    table of distances) starts again soon after the switch, and learns at the new pace."""
    hourly = START + 1800 + 3600 * np.arange(20 * 24, dtype=np.float64)
    minutes = hourly[-1] + 60 * np.arange(1, 3 * 24 * 60, dtype=np.float64)
    t = np.concatenate([hourly, minutes])
    v = usual(t) + np.random.default_rng(6).normal(0.0, 0.1, len(t))
    state = model.new_state()
    model.update(state, t, v, model.ModelParams().as_array())
    block = state[model.PATTERN_AT :]
    in_block = block[model.PB_READINGS]
    assert len(minutes) - 100 < in_block < len(minutes), in_block  # from the first minutes
    assert 30.0 < block[model.PB_INTERVAL] < 240.0, block[model.PB_INTERVAL]


@pytest.mark.parametrize("layout", ["before the rarity tables", "before the pattern block"])
def test_state_of_the_previous_layout_is_carried_over(layout: str) -> None:
    """A state stored by an earlier version keeps its learned curve (and its rarity tables,
    where it had them): what it lacks starts empty, and the expected value is the same as
    before the upgrade."""
    t, v = _noisy_days(7.0, seed=4)
    params = model.ModelParams().as_array()
    state = model.new_state()
    model.update(state, t, v, params)
    if layout == "before the rarity tables":
        old = state[: model.STATE_SIZE_V1].copy()
    else:
        old = state[: model.STATE_SIZE_V2].copy()
    grown = model.migrate(old)
    assert grown is not None
    assert grown.shape == (model.STATE_SIZE,)
    assert np.array_equal(grown[: len(old)], old)
    later = t[-1] + 600 * np.arange(1, 10, dtype=np.float64)
    assert np.allclose(
        model.expected_at(grown, later, params), model.expected_at(state, later, params)
    )
    out = model.update(grown, later, usual(later), params)
    assert np.all(np.isfinite(out))
    assert np.all(out[:, model.OUT_SCORE] < 0.5)
    assert model.migrate(np.zeros(7)) is None


def test_the_notify_blueprint_offers_every_kind() -> None:
    """The anomaly blueprint's kind picker, and its default of all of them, list every kind
    the model reports: a new kind missing there would never notify anyone."""
    path = ROOT / "blueprints" / "automation" / "edge_inference" / "notify_on_sensor_anomaly.yaml"
    # HA's `!input name` tag, read as the input's name: plain YAML has no such tag.
    blueprint = yaml.safe_load(path.read_text(encoding="utf-8").replace("!input ", ""))
    kinds = blueprint["blueprint"]["input"]["kinds"]
    offered = [option["value"] for option in kinds["selector"]["select"]["options"]]
    assert sorted(offered) == sorted(model.KIND_NAMES[1:])
    assert sorted(kinds["default"]) == sorted(model.KIND_NAMES[1:])
