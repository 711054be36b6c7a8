"""The per-series online model: level, damped trend, daily and weekly seasonality, robust scale.

One series' whole learned state is one float64 vector (`STATE_SIZE` values, ~15 KB), so it
pickles to one SQLite row and a batch of observations is one call of a numba-compiled loop
(`_update`): a 30-day warm start of 1-minute data runs in milliseconds, not seconds.

Irregular sampling (HA records state changes, not fixed steps) is handled by making every
learning rate a function of the time elapsed: level and scale forget per "typical interval"
(a gap of ten intervals forgets like ten steps), seasonal bins learn per day of data they saw.
Seasonality is two tables of bins (144 per day, 168 per week) read and written with linear
interpolation between neighbouring bins, so readings at any time of day update it smoothly.
Outliers cannot pull the model: residuals are clipped at a few robust scales (Huber) before
they update anything.

The score is the reading's rarity in the series' own history, from the most extreme values and
residuals kept (a return period in days), so it means the same on a noisy and a smooth sensor;
a new record that starts an anomaly far outside the usual range scores by how far, too, as a
record's rarity is capped by the history's length.
The flag (kind) comes from the model's rules (spike, level shift, drift, stuck, missing data,
and pattern: a stretch of readings unlike any kept before, though no reading in it is rare);
a spike, shift or drift starts only on a reading rare enough (`rare_days`), so the flag fires
about as often on a heavy-tailed sensor as on a smooth one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
DAILY_BINS = 144
WEEKLY_BINS = 168

# Anomaly kinds, as numbers in the kernel's output and as names in the API.
# New kinds go at the end: stored states keep their number.
(
    KIND_NONE,
    KIND_SPIKE,
    KIND_LEVEL_SHIFT,
    KIND_DRIFT,
    KIND_STUCK,
    KIND_MISSING,
    KIND_MODEL,
    KIND_PATTERN,
) = range(8)
KIND_NAMES = (
    "none",
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "missing_data",
    "model",
    "pattern",
)

# Scalar slots of the state vector; the seasonal tables follow them.
(
    S_COUNT,
    S_FIRST_T,
    S_LAST_T,
    S_LAST_V,
    S_LEVEL,
    S_TREND,
    S_SCALE,
    S_DT,
    S_DRIFT_SCALE,
    S_SLOW_SCALE,
    S_RUN_SIGN,
    S_RUN_LEN,
    S_SAME_RATE,
    S_SAME_RUN,
    S_SAME_SINCE,
    S_KIND,
    S_DIRECTION,
    S_SINCE,
    S_PEAK,
    S_BASELINE,
    S_RANGE_MEAN,
    S_RANGE_DEV,
) = range(22)
SCALARS = 24
DAILY_AT = SCALARS
WEEKLY_AT = DAILY_AT + DAILY_BINS
SPREAD_AT = WEEKLY_AT + WEEKLY_BINS  # the usual residual by time of day
# Pattern novelty: how far the latest stretch of readings is from the nearest of the stretches
# seen before (a nearest-neighbour "discord", as in matrix-profile and KNN-CAD detectors), for
# anomalies with no single rare reading: draws of water every 15 minutes instead of a few times
# a day, readings that turn from smooth to erratic within the usual range. A pattern is the last
# PATTERN_SPAN readings averaged in PATTERN_STEP-reading points, so one blip does not make
# every pattern novel. Earlier patterns are kept one every PATTERN_STRIDE readings in a ring
# (fixed state size; a reading costs PATTERNS_KEPT * PATTERN_POINTS multiply-adds); a kept
# pattern never overlaps the current one, or the latest would be its own nearest neighbour.
# The block keeps its own count, start time and slow average of the usual interval between
# readings: it starts again, with an empty table of distances, when the (smoothed) usual
# interval moves fourfold off that average (a warm start from HA's hourly means that goes on
# with every state change: a stretch of hours is no pattern of minutes), and a state grown
# from an older layout starts it empty.
# Here, not in a module of its own: numba's cache of `_update` does not notice a change in
# another file's constants.
PATTERN_POINTS = 8  # points in a pattern
PATTERN_STEP = 4  # readings averaged into one point
PATTERN_SPAN = PATTERN_POINTS * PATTERN_STEP  # readings a pattern covers
PATTERNS_KEPT = 128  # earlier patterns kept: the last PATTERNS_KEPT * PATTERN_STRIDE readings
PATTERN_STRIDE = 8  # one pattern kept every this many readings
PATTERNS_MIN = 8  # patterns kept before a distance is given

PATTERN_RESTART = 4.0  # the usual interval this many times longer or shorter: start again
(
    PB_READINGS,  # readings in the block
    PB_KEPT,  # patterns kept so far
    PB_SINCE,  # the time of its first distance scored
    PB_INTERVAL,  # its usual interval between readings (slow)
    PB_SEEN,  # distances scored so far
    PB_MEAN,  # their running mean
) = range(6)
PB_RING_AT = 6  # the last 2 * PATTERN_SPAN readings, indexed by the reading count
PB_PATTERNS_AT = PB_RING_AT + 2 * PATTERN_SPAN  # the kept patterns, a ring
PATTERN_SIZE = PB_PATTERNS_AT + PATTERNS_KEPT * PATTERN_POINTS

# Rarity: the TAIL_K most extreme readings and residuals seen, in five tables: highest values,
# lowest values (negated), highest residuals, lowest residuals (negated), and the largest
# pattern distances (the pattern block).
TAIL_K = 64
TAIL_AT = SPREAD_AT + DAILY_BINS
TAIL_TOP_V, TAIL_LOW_V, TAIL_TOP_R, TAIL_LOW_R, TAIL_PATTERN = range(5)
TAILS = 5
PATTERN_AT = TAIL_AT + TAILS * TAIL_K  # the pattern block
STATE_SIZE = PATTERN_AT + PATTERN_SIZE
# Earlier layouts, which `migrate` pads: before the tail tables (schema 1 rows), and before the
# pattern novelty (four tail tables).
STATE_SIZE_V1 = TAIL_AT
STATE_SIZE_V2 = TAIL_AT + 4 * TAIL_K

# Columns of the kernel's per-observation output.
(
    OUT_SCORE,
    OUT_KIND,
    OUT_DIRECTION,
    OUT_EXPECTED,
    OUT_LOWER,
    OUT_UPPER,
    OUT_EVENT,
    OUT_ENDED,
    OUT_Z,  # the residual in sigmas (a feature for a user's scoring model)
    OUT_RARITY,  # log10 of the return period in days (likewise)
) = range(10)
OUT_COLUMNS = 10
EVENT_NONE, EVENT_START, EVENT_END = 0, 1, 2

# Gaussian sigma from a mean absolute deviation.
MAD_TO_SIGMA = 1.2533


@dataclass(frozen=True)
class ModelParams:
    """Learning rates and detection thresholds; the same for every series (never per file)."""

    level_rate: float = 0.08  # per typical interval
    trend_rate: float = 0.002  # per typical interval
    trend_damping_h: float = 6.0  # the trend's e-folding time in forecasts, hours
    scale_rate: float = 0.02  # per typical interval
    daily_rate: float = 0.35  # per day of data in a bin
    weekly_rate: float = 0.35  # per week of data in a bin
    huber: float = 3.0  # residuals clipped at this many sigmas before learning
    spike_z: float = 5.0  # |z| above this flags an observation (the interval's half width)
    shift_run: float = 3.0  # this many flagged observations of one sign make a level shift
    baseline_s: float = DAY_S  # the slow level that drifts are measured from: time constant
    drift_z: float = 3.0  # level off the baseline by this many of its usual deviations: drift
    stuck_p: float = 1e-6  # a run of identical values this unlikely is a stuck sensor
    stuck_min: float = 10.0  # and is at least this many observations long
    gap_factor: float = 12.0  # a gap this many typical intervals long is missing data
    gap_min_s: float = 900.0  # and at least this long
    reset_gap_s: float = 3 * DAY_S  # after a gap this long the level is learned anew
    range_memory: float = 2000.0  # observations the usual range is averaged over
    range_z: float = 6.0  # a value this many deviations outside the usual range is flagged
    warmup: float = 50.0  # observations before any flag
    rarity_residual: float = 0.3  # weight of the residual's rarity beside the value's
    rare_days: float = 10.0  # a reading as extreme as one in this many days scores 0.5;
    # only one at least this rare starts an anomaly
    usual_after_s: float = 7 * DAY_S  # history before extremes seen daily are not flagged
    pattern_record: float = 6.0  # a pattern further than any before: rarity per 10x further

    def as_array(self) -> F64:
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)


(
    P_LEVEL,
    P_TREND,
    P_DAMP,
    P_SCALE,
    P_DAILY,
    P_WEEKLY,
    P_HUBER,
    P_SPIKE_Z,
    P_SHIFT_RUN,
    P_BASELINE,
    P_DRIFT_Z,
    P_STUCK_P,
    P_STUCK_MIN,
    P_GAP_FACTOR,
    P_GAP_MIN,
    P_RESET_GAP,
    P_RANGE_MEMORY,
    P_RANGE_Z,
    P_WARMUP,
    P_RARITY_RESIDUAL,
    P_RARE_DAYS,
    P_USUAL_AFTER,
    P_PATTERN_RECORD,
) = range(23)


def new_state() -> F64:
    state = np.zeros(STATE_SIZE, dtype=np.float64)
    _clear_tails(state)
    return state


def migrate(state: F64) -> F64 | None:
    """A stored state in the current layout, or None when it cannot be carried over.

    Older rows lack the tail tables or the pattern block: those start empty and fill from the
    next readings, so level, seasonality and scales learned before the upgrade are kept."""
    if state.shape == (STATE_SIZE,):
        return state
    if state.shape in ((STATE_SIZE_V1,), (STATE_SIZE_V2,)):
        grown = new_state()
        grown[: len(state)] = state
        return grown
    return None


@numba.njit(cache=True)
def _clear_tails(state: F64) -> None:
    for k in range(TAILS * TAIL_K):
        state[TAIL_AT + k] = -math.inf


def update(
    state: F64, t: F64, v: F64, params: F64, scores: F64 | None = None
) -> npt.NDArray[np.float64]:
    """Learn from the observations (t strictly increasing) in place; one output row each.

    `scores`: a user's model's score per observation, in place of the rarity score; it then
    decides spikes, shifts and drifts (kind `model` where the rules saw none), while stuck and
    missing data stay the rules' (they are about the sensor, not the value)."""
    out = np.zeros((len(t), OUT_COLUMNS), dtype=np.float64)
    given = np.empty(0) if scores is None else np.asarray(scores, dtype=np.float64)
    _update(state, t, v, params, given, out)
    return out


def expected_at(state: F64, t: F64, params: F64) -> F64:
    """Forecast rows (expected, lower, upper) for future times t, without learning."""
    out = np.zeros((len(t), 3), dtype=np.float64)
    _forecast(state, t, params, out)
    return out


def scale_sigma(state: F64) -> float:
    return float(MAD_TO_SIGMA * state[S_SCALE] + _floor(state[S_LEVEL]))


@numba.njit(cache=True, inline="always")
def _floor(level: float) -> float:
    # A perfectly flat series still gets a finite z for its first change.
    return 1e-6 * max(1.0, abs(level))


@numba.njit(cache=True, inline="always")
def _bin_weights(t: float, period: float, bins: int) -> tuple[int, int, float]:
    pos = (t % period) / period * bins - 0.5
    lo = math.floor(pos)
    frac = pos - lo
    return int(lo) % bins, int(lo + 1) % bins, frac


@numba.njit(cache=True)
def _seasonal(state: F64, t: float) -> float:
    d0, d1, df = _bin_weights(t, DAY_S, DAILY_BINS)
    # Epoch day 0 was a Thursday: shift so weekly bin 0 is Monday 00:00 UTC.
    w0, w1, wf = _bin_weights(t + 3 * DAY_S, WEEK_S, WEEKLY_BINS)
    daily = (1 - df) * state[DAILY_AT + d0] + df * state[DAILY_AT + d1]
    weekly = (1 - wf) * state[WEEKLY_AT + w0] + wf * state[WEEKLY_AT + w1]
    return float(daily + weekly)


@numba.njit(cache=True)
def _learn_seasonal(
    state: F64, t: float, target: float, daily_rate: float, week_rate: float
) -> None:
    d0, d1, df = _bin_weights(t, DAY_S, DAILY_BINS)
    w0, w1, wf = _bin_weights(t + 3 * DAY_S, WEEK_S, WEEKLY_BINS)
    daily = (1 - df) * state[DAILY_AT + d0] + df * state[DAILY_AT + d1]
    weekly = (1 - wf) * state[WEEKLY_AT + w0] + wf * state[WEEKLY_AT + w1]
    # The daily table learns what the weekly one leaves, and the other way round.
    err_d = target - weekly - daily
    state[DAILY_AT + d0] += daily_rate * (1 - df) * err_d
    state[DAILY_AT + d1] += daily_rate * df * err_d
    daily = (1 - df) * state[DAILY_AT + d0] + df * state[DAILY_AT + d1]
    err_w = target - daily - weekly
    state[WEEKLY_AT + w0] += week_rate * (1 - wf) * err_w
    state[WEEKLY_AT + w1] += week_rate * wf * err_w


@numba.njit(cache=True)
def _learn_seasonal_span(
    state: F64,
    t: float,
    target: float,
    span: float,
    daily_bin_days: float,
    week_bins: float,
    p: F64,
) -> None:
    """Learn one reading that stands for `span` seconds around t (HA's hourly statistics, a
    sensor that reports every 20 minutes): every daily bin in the span learns, not only the
    two next to t, so the daily curve has no unlearned holes between sparse readings. The
    data is shared out, so the tables learn as fast per day as from a reading a minute."""
    bin_s = DAY_S / DAILY_BINS
    steps = max(1, min(DAILY_BINS, int(span / bin_s)))
    daily_rate = _rate(p[P_DAILY], daily_bin_days / steps)
    weekly_rate = _rate(p[P_WEEKLY], week_bins / steps)
    for k in range(steps):  # one step: at t itself
        _learn_seasonal(state, t + (k + 0.5 - steps / 2) * bin_s, target, daily_rate, weekly_rate)


@numba.njit(cache=True)
def _daily_spread(state: F64, t: float) -> float:
    d0, d1, df = _bin_weights(t, DAY_S, DAILY_BINS)
    return float((1 - df) * state[SPREAD_AT + d0] + df * state[SPREAD_AT + d1])


@numba.njit(cache=True)
def _learn_spread(state: F64, t: float, target: float, rate: float) -> None:
    d0, d1, df = _bin_weights(t, DAY_S, DAILY_BINS)
    state[SPREAD_AT + d0] += rate * (1 - df) * (target - state[SPREAD_AT + d0])
    state[SPREAD_AT + d1] += rate * df * (target - state[SPREAD_AT + d1])


@numba.njit(cache=True)
def _tail_rarity(
    state: F64, table: int, x: float, center: float, seen: float, learn: bool
) -> tuple[float, float]:
    """-log10 of the share of the `seen` readings so far at or above x, and the highest kept
    before x (-inf while the table is empty: x beyond it is a record); then, if `learn`, x
    joins the table when it is among the TAIL_K highest.

    Exact among the TAIL_K highest (the table); below them, log-linear from 0 at `center`
    to the table's edge, so the bulk of the readings needs no storage."""
    start = TAIL_AT + table * TAIL_K
    kept = 0
    at_or_above = 0
    edge = math.inf  # the lowest kept; -inf slots are empty
    top = -math.inf
    weakest = start
    for k in range(start, start + TAIL_K):
        value = state[k]
        top = max(top, value)
        if value < state[weakest]:
            weakest = k
        if value > -math.inf:
            kept += 1
            edge = min(edge, value)
            if value >= x:
                at_or_above += 1
    if learn:
        state[weakest] = max(state[weakest], x)
    if kept < TAIL_K or seen < 2 * TAIL_K:
        return 0.0, top
    if at_or_above < TAIL_K:
        return math.log10((seen + 1.0) / (at_or_above + 1.0)), top
    if x <= center or edge <= center:
        return 0.0, top
    return math.log10((seen + 1.0) / (TAIL_K + 1.0)) * (x - center) / (edge - center), top


@numba.njit(cache=True)
def _pattern_ending(block: F64, end: int, points: F64) -> None:
    """The pattern of the PATTERN_SPAN readings up to reading number `end`, into `points`."""
    first = end - PATTERN_SPAN + 1
    for w in range(PATTERN_POINTS):
        total = 0.0
        for k in range(PATTERN_STEP):
            total += block[PB_RING_AT + (first + w * PATTERN_STEP + k) % (2 * PATTERN_SPAN)]
        points[w] = total / PATTERN_STEP


@numba.njit(cache=True)
def _nearest_pattern_distance(block: F64, v: float) -> float:
    """Learn the reading v; return the RMS distance (in the sensor's unit) of the pattern it
    ends to the nearest kept earlier one, or -1 while too few patterns are kept."""
    i = int(block[PB_READINGS])
    block[PB_RING_AT + i % (2 * PATTERN_SPAN)] = v
    block[PB_READINGS] = i + 1
    points = np.empty(PATTERN_POINTS)
    # Keep the pattern that ended PATTERN_SPAN readings ago: it does not overlap the current one.
    old_end = i - PATTERN_SPAN
    if old_end >= PATTERN_SPAN - 1 and old_end % PATTERN_STRIDE == 0:
        _pattern_ending(block, old_end, points)
        at = PB_PATTERNS_AT + int(block[PB_KEPT]) % PATTERNS_KEPT * PATTERN_POINTS
        block[at : at + PATTERN_POINTS] = points
        block[PB_KEPT] += 1
    kept = int(min(block[PB_KEPT], PATTERNS_KEPT))
    if i < PATTERN_SPAN - 1 or kept < PATTERNS_MIN:
        return -1.0
    _pattern_ending(block, i, points)
    best = math.inf
    for m in range(kept):
        at = PB_PATTERNS_AT + m * PATTERN_POINTS
        squares = 0.0
        for w in range(PATTERN_POINTS):
            diff = points[w] - block[at + w]
            squares += diff * diff
        best = min(best, squares)
    return math.sqrt(best / PATTERN_POINTS)


@numba.njit(cache=True)
def _pattern_rarity(state: F64, t: float, v: float, typical: float, scale: float, p: F64) -> float:
    """Learn v into the pattern block; the rarity (log10 of the return period in days, like a
    reading's) of how far the pattern it ends is from every earlier one, in `scale` units.

    Past the largest distance kept, the return period grows as a power of how far past
    (`pattern_record` per tenfold): a history of days cannot count a pattern rarer than once
    in those days, yet one twice as strange as any before is plainly rarer."""
    block = state[PATTERN_AT:]
    interval = block[PB_INTERVAL]
    if (
        block[PB_READINGS] == 0
        or not interval / PATTERN_RESTART <= typical <= interval * PATTERN_RESTART
    ):
        block[:] = 0.0
        start = TAIL_AT + TAIL_PATTERN * TAIL_K
        state[start : start + TAIL_K] = -math.inf
        block[PB_INTERVAL] = typical
    else:
        block[PB_INTERVAL] += (typical - interval) / p[P_RANGE_MEMORY]
    distance = _nearest_pattern_distance(block, v) / scale
    if distance < 0:
        return 0.0
    seen = block[PB_SEEN]
    if seen == 0:
        block[PB_SINCE] = t  # distances per day are counted from here
    rarity, record = _tail_rarity(state, TAIL_PATTERN, distance, block[PB_MEAN], seen, True)
    if seen >= 2 * TAIL_K:
        rarity -= math.log10(seen * DAY_S / max(t - block[PB_SINCE], 1.0))
        if distance > record > 0:
            rarity += p[P_PATTERN_RECORD] * math.log10(distance / record)
    else:
        rarity = 0.0
    follow = max(1.0 / (seen + 1.0), 1.0 / p[P_RANGE_MEMORY])
    block[PB_MEAN] += follow * (distance - block[PB_MEAN])
    block[PB_SEEN] = seen + 1.0
    return rarity


@numba.njit(cache=True, inline="always")
def _rate(per_step: float, steps: float) -> float:
    return float(1.0 - (1.0 - per_step) ** steps)


@numba.njit(cache=True, nogil=True)
def _update(state: F64, ts: F64, vs: F64, p: F64, given: F64, out: F64) -> None:
    rare_half = math.log10(p[P_RARE_DAYS])  # the rarity that scores 0.5
    for i in range(len(ts)):
        t = ts[i]
        v = vs[i]
        n = state[S_COUNT]
        if n == 0:
            _clear_tails(state)
            state[S_FIRST_T] = t
            state[S_LEVEL] = v
            state[S_LAST_T] = t
            state[S_LAST_V] = v
            state[S_SAME_SINCE] = t
            state[S_SAME_RATE] = 0.5
            state[S_BASELINE] = v
            state[S_RANGE_MEAN] = v
            state[S_COUNT] = 1
            out[i, OUT_EXPECTED] = v
            out[i, OUT_LOWER] = v
            out[i, OUT_UPPER] = v
            continue
        dt = t - state[S_LAST_T]
        if n == 1:
            state[S_DT] = dt
            state[S_SCALE] = abs(v - state[S_LAST_V]) / 2
            state[S_SLOW_SCALE] = state[S_SCALE]
        typical = state[S_DT]
        steps = min(dt / typical, 1000.0) if typical > 0 else 1.0
        hours = dt / 3600.0
        old_kind = state[S_KIND]

        # Predict.
        damp = math.exp(-hours / p[P_DAMP])
        level_pred = state[S_LEVEL] + state[S_TREND] * p[P_DAMP] * (1 - damp)
        seasonal = _seasonal(state, t)
        expected = level_pred + seasonal
        # Some times of day are always rougher (a heating cycle, a daily step): wider there.
        spread = max(state[S_SCALE], _daily_spread(state, t))
        sigma = MAD_TO_SIGMA * spread + _floor(state[S_LEVEL])
        resid = v - expected
        z = resid / sigma
        az = abs(z)
        direction = 1.0 if resid > 0 else (-1.0 if resid < 0 else 0.0)

        # Missing data: a gap far longer than this series' usual interval.
        gap = dt > p[P_GAP_FACTOR] * typical and dt > p[P_GAP_MIN]
        if dt > p[P_RESET_GAP]:
            # After days without data the old level says little: start it again here.
            level_pred = v - seasonal
            state[S_TREND] = 0.0
            state[S_BASELINE] = level_pred
            az = 0.0
            z = 0.0

        # Stuck: a run of identical values far longer than this series' history makes likely.
        same = v == state[S_LAST_V]
        if same:
            if state[S_SAME_RUN] == 0:
                state[S_SAME_SINCE] = state[S_LAST_T]
            state[S_SAME_RUN] += 1
        else:
            state[S_SAME_RUN] = 0
        run = state[S_SAME_RUN]
        p_same = min(max(state[S_SAME_RATE], 1e-4), 0.999)
        stuck = run >= p[P_STUCK_MIN] and run * math.log(p_same) < math.log(p[P_STUCK_P])

        # Spike or level shift: a run of large residuals of one sign.
        big = az > p[P_SPIKE_Z]
        if big and direction == state[S_RUN_SIGN]:
            state[S_RUN_LEN] += 1
        elif big:
            state[S_RUN_SIGN] = direction
            state[S_RUN_LEN] = 1
        else:
            state[S_RUN_LEN] = 0
            state[S_RUN_SIGN] = 0
        shifted = state[S_RUN_LEN] >= p[P_SHIFT_RUN]

        # Drift: the level walked away from the slow baseline further than it usually does.
        offset = level_pred - state[S_BASELINE]
        # Against slow scales: the fast one widens while a drift is under way.
        slow_sigma = MAD_TO_SIGMA * (state[S_DRIFT_SCALE] + state[S_SLOW_SCALE])
        drift_sigma = slow_sigma + _floor(state[S_LEVEL])
        drift = offset / drift_sigma
        drifting = abs(drift) > p[P_DRIFT_Z] and t - state[S_FIRST_T] > DAY_S

        # Out of range: far from everything this sensor usually reads (time of day aside).
        range_dev = MAD_TO_SIGMA * state[S_RANGE_DEV] + _floor(state[S_RANGE_MEAN])
        rz = abs(v - state[S_RANGE_MEAN]) / range_dev
        out_of_range = rz > p[P_RANGE_Z]
        # How unusual the stretch of readings this one ends is (the pattern block), in the same
        # usual deviations, as a return period like the reading's rarity below.
        pattern_rarity = _pattern_rarity(state, t, v, typical, range_dev, p)

        # Rarity: how few of the readings so far were as extreme, in value and in residual, as
        # a return period: log10 of the days between readings this extreme. Counting per day,
        # not per reading, makes a sensor that reports every second no noisier than one that
        # reports hourly.
        # A stuck sensor's copies of one value would crowd the tables: they are not kept.
        history_s = max(t - state[S_FIRST_T], 1.0)
        keep = not stuck
        rare_high, highest = _tail_rarity(state, TAIL_TOP_V, v, state[S_RANGE_MEAN], n, keep)
        rare_low, lowest = _tail_rarity(state, TAIL_LOW_V, -v, -state[S_RANGE_MEAN], n, keep)
        rare_value = max(rare_high, rare_low)
        record = v > highest or -v > lowest  # beyond every value kept (lows are negated)
        rare_resid = max(
            _tail_rarity(state, TAIL_TOP_R, resid, 0.0, n, keep)[0],
            _tail_rarity(state, TAIL_LOW_R, -resid, 0.0, n, keep)[0],
        )
        rarity = 0.0
        tail_rarity = 0.0  # the rarer of the two alone: a calibrated return period
        if rare_value > 0 or rare_resid > 0:
            # An unusual value counts more with an unusual residual; an unusual residual (a
            # jump at a time of day when the value itself is common) counts on its own.
            both = rare_value + p[P_RARITY_RESIDUAL] * rare_resid
            per_day = math.log10(n * DAY_S / history_s)
            rarity = max(both, rare_resid) - per_day
            tail_rarity = max(rare_value, rare_resid) - per_day

        # Score in 0..1 from the rarity: 0.5 for a reading as extreme as one in `rare_days`
        # days, more for rarer ones, 0 for one as common as daily. A flagged reading (below)
        # scores at least 0.5, so the score and the flag never disagree about an alarm.
        score = rarity / (rarity + rare_half) if rarity > 0 else 0.0
        # With enough history, readings this extreme that come more than once a day are this
        # sensor's normal (a power meter's spikes, a busy count): not flagged as anomalies.
        usual_extreme = (
            rarity < 0 and (rare_value > 0 or rare_resid > 0) and history_s >= p[P_USUAL_AFTER]
        )
        # An anomaly starts only on a reading at least as rare as one in `rare_days` days (a
        # record while the history is shorter), so a heavy-tailed sensor does not page daily;
        # once started it lasts while the rules see it. A user's model decides instead (below).
        # The score's sum of value and residual rarity ranks readings well but overstates how
        # seldom they come (both are extreme together), hence the rarer of the two here.
        rare_enough = tail_rarity >= min(rare_half, max(math.log10(history_s / DAY_S), 0.0))
        ongoing = old_kind in (KIND_SPIKE, KIND_LEVEL_SHIFT, KIND_DRIFT)
        notable = not usual_extreme and (rare_enough or ongoing or len(given) > 0)
        kind = KIND_NONE
        if big and notable:
            kind = KIND_LEVEL_SHIFT if shifted else KIND_SPIKE
        elif (drifting or out_of_range) and notable:
            kind = KIND_DRIFT  # walked away from the usual level, or out of the usual range
            direction = (1.0 if drift > 0 else -1.0) if drifting else direction
        if record and out_of_range and rare_enough and not usual_extreme:
            # A new record, rare enough to start an anomaly, ranks by how far it left the usual
            # range too (0.5 at the range's edge): its rarity alone stops growing at a record.
            # Not a value seen before (a sensor's recurring peaks rank by their rarity), nor
            # the rest of the episode, so a long excursion is not a long run of high scores.
            score = max(score, rz / (rz + p[P_RANGE_Z]))
        if pattern_rarity > 0 and len(given) == 0:
            # A stretch of readings unlike any before, though no reading in it need be rare
            # (draws every 15 minutes instead of a few a day): scored on the same scale, and
            # an anomaly of its own while it is as rare as one in `rare_days` days.
            score = max(score, pattern_rarity / (pattern_rarity + rare_half))
            # Once started it lasts while the stretch stays rarer than daily, so a pattern
            # that comes and goes around the bar is one episode, not a burst of them.
            started = old_kind == KIND_PATTERN or pattern_rarity >= rare_half
            if kind == KIND_NONE and started:
                kind = KIND_PATTERN
                direction = 0.0
        if stuck:
            kind = KIND_STUCK
            direction = 0.0
        if gap and not big:
            kind = KIND_MISSING
            direction = 0.0
        if len(given):
            score = min(max(given[i], 0.0), 1.0) if math.isfinite(given[i]) else 0.0
            if score < 0.5 and kind in (KIND_SPIKE, KIND_LEVEL_SHIFT, KIND_DRIFT):
                kind = KIND_NONE
            elif score >= 0.5 and kind == KIND_NONE:
                kind = KIND_MODEL
        if n < p[P_WARMUP]:
            kind = KIND_NONE
            score = 0.0
        elif kind != KIND_NONE:
            score = max(score, 0.5)

        # Learn: robust (clipped) residual into level, trend, scale and seasonality.
        clip = p[P_HUBER] * sigma
        if shifted:
            # The new level is real: jump to it and forget the evidence.
            level_new = v - seasonal
            state[S_RUN_LEN] = 0
            state[S_BASELINE] = level_new
        elif stuck:
            level_new = level_pred  # a stuck sensor says nothing about the world
        else:
            err = max(-clip, min(clip, v - level_pred - seasonal))
            level_new = level_pred + _rate(p[P_LEVEL], steps) * err
        if hours > 0:
            slope = (level_new - state[S_LEVEL]) / hours
            state[S_TREND] += _rate(p[P_TREND], steps) * (slope - state[S_TREND])
        state[S_LEVEL] = level_new
        if not (shifted or stuck):
            # Seasonality is learned against the slow baseline, so the fast level cannot
            # soak it up (the usual Holt-Winters trade-off between the two).
            follow = 1.0 - math.exp(-dt / p[P_BASELINE])
            state[S_BASELINE] += follow * (level_new - state[S_BASELINE])
            # Slow scales: a running mean at first, then a week's memory; a drift under way
            # enters only clipped, so it does not become "usual" before it is reported.
            slow = max(follow / 7, 1.0 / n)
            if t - state[S_FIRST_T] > DAY_S:  # before, the level still carries the day's swing
                usual = min(abs(offset), drift_sigma)
                state[S_DRIFT_SCALE] += slow * (usual - state[S_DRIFT_SCALE])
            state[S_SLOW_SCALE] += slow * (state[S_SCALE] - state[S_SLOW_SCALE])
            abs_err = min(abs(resid), clip)
            state[S_SCALE] += _rate(p[P_SCALE], steps) * (abs_err - state[S_SCALE])
            _learn_spread(state, t, abs_err, _rate(p[P_DAILY], dt / DAY_S * DAILY_BINS))
            target = max(-clip, min(clip, v - state[S_BASELINE] - seasonal)) + seasonal
            # A reading stands for its usual interval, up to a quarter of a day.
            span = min(typical, dt, DAY_S / 4)
            _learn_seasonal_span(
                state, t, target, span, dt / DAY_S * DAILY_BINS, dt / WEEK_S * WEEKLY_BINS, p
            )
        if not stuck:
            follow_range = max(1.0 / n, 1.0 / p[P_RANGE_MEMORY])
            usual_dev = abs(v - state[S_RANGE_MEAN])
            if n > p[P_WARMUP]:
                usual_dev = min(usual_dev, p[P_RANGE_Z] * range_dev)
            state[S_RANGE_MEAN] += follow_range * (v - state[S_RANGE_MEAN])
            state[S_RANGE_DEV] += follow_range * (usual_dev - state[S_RANGE_DEV])
        if not same:
            state[S_SAME_RATE] += 0.01 * (0.0 - state[S_SAME_RATE])
        elif run < p[P_STUCK_MIN]:
            state[S_SAME_RATE] += 0.01 * (1.0 - state[S_SAME_RATE])
        state[S_DT] += 0.05 * (min(dt, 5 * typical) - typical)
        state[S_LAST_T] = t
        state[S_LAST_V] = v
        state[S_COUNT] = n + 1

        # Episodes: an event when an anomaly starts and when it ends.
        event = EVENT_NONE
        if kind != KIND_NONE and old_kind == KIND_NONE:
            event = EVENT_START
            state[S_SINCE] = t
            state[S_PEAK] = score
        elif kind == KIND_NONE and old_kind != KIND_NONE:
            event = EVENT_END
        elif kind != KIND_NONE:
            state[S_PEAK] = max(state[S_PEAK], score)
        state[S_KIND] = kind
        state[S_DIRECTION] = direction

        half = p[P_SPIKE_Z] * sigma
        out[i, OUT_SCORE] = score
        out[i, OUT_KIND] = kind
        out[i, OUT_DIRECTION] = direction if kind != KIND_NONE else 0.0
        out[i, OUT_EXPECTED] = expected
        out[i, OUT_LOWER] = expected - half
        out[i, OUT_UPPER] = expected + half
        out[i, OUT_EVENT] = event
        out[i, OUT_ENDED] = old_kind if event == EVENT_END else 0.0
        out[i, OUT_Z] = z
        out[i, OUT_RARITY] = rarity


@numba.njit(cache=True, nogil=True)
def _forecast(state: F64, ts: F64, p: F64, out: F64) -> None:
    sigma = MAD_TO_SIGMA * state[S_SCALE] + _floor(state[S_LEVEL])
    typical = max(state[S_DT], 1.0)
    for i in range(len(ts)):
        hours = max(0.0, ts[i] - state[S_LAST_T]) / 3600.0
        level = state[S_LEVEL] + state[S_TREND] * p[P_DAMP] * (1 - math.exp(-hours / p[P_DAMP]))
        expected = level + _seasonal(state, ts[i])
        # The level's uncertainty grows like a random walk learned at level_rate per step.
        steps = hours * 3600.0 / typical
        widen = math.sqrt(1.0 + p[P_LEVEL] * p[P_LEVEL] * steps)
        half = p[P_SPIKE_Z] * sigma * widen
        out[i, 0] = expected
        out[i, 1] = expected - half
        out[i, 2] = expected + half
