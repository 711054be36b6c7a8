"""The online model alone, where a property is about the model and not the HTTP path."""

from __future__ import annotations

import math

import numpy as np

from inference_server.pipelines.sensors import model

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
