"""The Numenta Anomaly Benchmark's scoring rules, re-implemented from NAB's own code.

Follows numenta/NAB `nab/sweeper.py` (calcSweepScore, calcScoreByThreshold, scoreDataSet),
`nab/optimizer.py` (one threshold per profile, the best for the whole corpus) and
`nab/runner.py` (normalize: 100 * (score - null) / (perfect - null), perfect = labels x tpWeight):

- every row of a file gets a sweep score: inside a labelled window the scaled sigmoid of its
  position (earliest = ~+1 x tpWeight), outside it -fpWeight, or the scaled sigmoid of the
  distance past the previous window; rows in the probationary period (the first 15 % of a
  file, at most 750 rows) are not scored;
- at a threshold, every row whose anomaly score is >= it is a detection; a window counts its
  best detection, or -fnWeight when it has none; every detection outside windows adds its
  (negative) sweep score.
Profiles are read from NAB's config/profiles.json, windows from labels/combined_windows.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

PROBATIONARY_PERCENT = 0.15


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


@dataclass
class ScoredFile:
    """One data file's rows ready for any threshold: sweep scores and window membership."""

    name: str
    anomaly: npt.NDArray[np.float64]  # the detector's score per scorable row
    sweep: npt.NDArray[np.float64]  # NAB's weighted sweep score per scorable row
    window: npt.NDArray[np.int64]  # window number per scorable row, -1 outside windows
    windows: int  # windows that have at least one scorable row


def load_profiles(nab_root: Path) -> list[Profile]:
    raw = json.loads((nab_root / "config" / "profiles.json").read_text(encoding="utf-8"))
    return [
        Profile(
            name,
            m["CostMatrix"]["tpWeight"],
            m["CostMatrix"]["fpWeight"],
            m["CostMatrix"]["fnWeight"],
        )
        for name, m in raw.items()
    ]


def scaled_sigmoid(position: float) -> float:
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probationary_length(rows: int) -> float:
    return min(math.floor(PROBATIONARY_PERCENT * rows), PROBATIONARY_PERCENT * 5000)


def sweep_file(
    name: str,
    timestamps: npt.NDArray[np.datetime64],
    anomaly: npt.NDArray[np.float64],
    windows: list[tuple[np.datetime64, np.datetime64]],
    profile: Profile,
) -> ScoredFile:
    """NAB's calcSweepScore for one file, keeping only the scorable rows."""
    rows = len(timestamps)
    index = {t: i for i, t in enumerate(timestamps.tolist())}
    bounds = [(index[a.tolist()], index[b.tolist()]) for a, b in windows]
    max_tp = scaled_sigmoid(-1.0)
    sweep = np.empty(rows)
    window = np.full(rows, -1, dtype=np.int64)
    prev_right: int | None = None
    prev_width = 0.0
    w = 0
    i = 0
    while i < rows:
        if w < len(bounds) and i == bounds[w][0]:
            left, right = bounds[w]
            width = float(right - left + 1)
            for j in range(left, right + 1):
                position = -(right - j + 1) / width
                sweep[j] = scaled_sigmoid(position) * profile.tp / max_tp
                window[j] = w
            prev_right, prev_width = right, width
            w += 1
            i = right + 1
            continue
        if prev_right is None:
            sweep[i] = -1.0 * profile.fp
        else:
            sweep[i] = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1)) * profile.fp
        i += 1
    start = math.ceil(probationary_length(rows))
    scorable_windows = len(set(window[start:].tolist()) - {-1})
    return ScoredFile(name, anomaly[start:], sweep[start:], window[start:], scorable_windows)


def score_at(files: Iterable[ScoredFile], threshold: float, profile: Profile) -> float:
    """The raw NAB score of these files when every score >= threshold is a detection."""
    total = 0.0
    for f in files:
        detected = f.anomaly >= threshold
        outside = detected & (f.window < 0)
        total += float(f.sweep[outside].sum())
        for w in set(f.window[f.window >= 0].tolist()):
            hits = detected & (f.window == w)
            total += float(f.sweep[hits].max()) if hits.any() else -profile.fn
    return total


def best_threshold(files: list[ScoredFile], profile: Profile) -> tuple[float, float]:
    """NAB's optimizer: sweep every distinct score, highest first; the best (threshold, score)."""
    anomaly = np.concatenate([f.anomaly for f in files])
    sweep = np.concatenate([f.sweep for f in files])
    # Window ids made unique across files.
    offsets = np.cumsum([0] + [max(f.window.max(initial=-1) + 1, 0) for f in files])
    window = np.concatenate(
        [
            np.where(f.window >= 0, f.window + off, -1)
            for f, off in zip(files, offsets, strict=False)
        ]
    )
    order = np.argsort(-anomaly, kind="stable")
    best = (1.1, -profile.fn * len(set(window[window >= 0].tolist())))
    window_best: dict[int, float] = {}
    score = best[1]
    i = 0
    n = len(order)
    while i < n:
        value = anomaly[order[i]]
        while i < n and anomaly[order[i]] == value:
            k = order[i]
            wid = int(window[k])
            if wid < 0:
                score += sweep[k]
            else:
                old = window_best.get(wid)
                if old is None:
                    score += sweep[k] + profile.fn
                    window_best[wid] = sweep[k]
                elif sweep[k] > old:
                    score += sweep[k] - old
                    window_best[wid] = sweep[k]
            i += 1
        if score > best[1]:
            best = (float(value), score)
    return best


def normalised(raw: float, null: float, labels: int, profile: Profile) -> float:
    perfect = labels * profile.tp
    return 100.0 * (raw - null) / (perfect - null)
