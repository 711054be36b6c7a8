"""What the sensor models learned, in SQLite in the data dir: one row per series.

Every batch is written in one transaction and committed (WAL, synchronous=FULL) before the
server answers, so an acknowledged batch survives a kill -9 or a power cut; a batch that was
not acknowledged is either wholly in or wholly out.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import F64, migrate

SCHEMA_VERSION = 1


@dataclass
class SeriesRow:
    series_id: str
    unit: str | None
    state: F64
    scorer: str | None = None  # a user's scoring model (scoring.py), or the built-in rarity


class SensorStore:
    """One connection, used from one worker thread at a time (the lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS series ("
            " series_id TEXT PRIMARY KEY,"
            " unit TEXT,"
            " schema INTEGER NOT NULL,"
            " state BLOB NOT NULL,"
            " updated REAL NOT NULL,"
            " scorer TEXT)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(series)")}
        if "scorer" not in columns:  # a database of a version before scoring models
            self._db.execute("ALTER TABLE series ADD COLUMN scorer TEXT")

    def load_all(self) -> dict[str, SeriesRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT series_id, unit, state, scorer FROM series WHERE schema = ?",
                (SCHEMA_VERSION,),
            ).fetchall()
        loaded = {}
        for series_id, unit, blob, scorer in rows:
            state = migrate(np.frombuffer(blob, dtype=np.float64).copy())
            if state is not None:  # else a layout this version cannot read: learned anew
                loaded[series_id] = SeriesRow(series_id, unit, state, scorer)
        return loaded

    def save(self, rows: list[SeriesRow], now: float) -> None:
        """Write the rows in one committed transaction (returns after the fsync)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO series (series_id, unit, schema, state, updated, scorer)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(series_id) DO UPDATE SET unit = excluded.unit,"
                    " schema = excluded.schema, state = excluded.state,"
                    " updated = excluded.updated, scorer = excluded.scorer",
                    [
                        (r.series_id, r.unit, SCHEMA_VERSION, r.state.tobytes(), now, r.scorer)
                        for r in rows
                    ],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def delete(self, series_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM series WHERE series_id = ?", (series_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
