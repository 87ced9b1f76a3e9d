"""The monitor's join state for one partition of the two streams, in one SQLite file (WAL), durable per batch.

Tables (docs/monitoring.md#join-state):
- `rows`: one row per (prediction_id, row): its time, predictor, slice labels (from the answering model's record),
  every model's score as packed (model id: uint16, score: float32) pairs, and the outcome once joined;
- `early`: outcomes that came before their prediction, joined when it arrives;
- `names`: interned predictors, models (name, version, role) and slice-label sets;
- `aggregates`: quality statistics per (predictor, model, slice label, hour), sibyl.quality's BinaryStats bytes
  (outcome 0 or 1, score in [0, 1]); `regression`: the same keys, RegressionStats bytes, for any other finite
  outcome and score (a regression target); a row with a non-finite score or outcome is counted `unscorable`;
- `offsets`: how far each source was read, written in the same transaction as what it read, so a restart resumes
  exactly where the durable state ends: nothing is counted twice or lost;
- `counters`: outcomes by result (joined, duplicate, early, unknown, late, evicted) and rows evicted.

Every outcome counts once: a second outcome for a joined row is `duplicate`; one for a row not (yet) seen waits in
`early` until its prediction arrives (`joined` then) or the window ends (`unknown`); one observed before the window
is `late`. A model's record that arrives after its row's outcome is added to the aggregates when it arrives.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sibyl.monitor.records import Logged, OutcomeRow
from sibyl.quality.regression import RegressionStats
from sibyl.quality.stats import BinaryStats

PAIR = np.dtype([("model", "<u2"), ("score", "<f4")])  # one model's score in rows.scores
HOUR_NS = 3_600_000_000_000
SEP = "\x1f"  # between the parts of an interned name
ANSWERING = ("primary", "experiment")
RESULTS = (
    "joined", "duplicate", "early", "unknown", "late", "evicted_unlabelled", "evicted_budget", "unscorable",
)  # fmt: skip

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    pid BLOB NOT NULL, row INTEGER NOT NULL, at INTEGER NOT NULL, predictor INTEGER NOT NULL,
    slices INTEGER, scores BLOB NOT NULL DEFAULT x'', label REAL, weight REAL,
    PRIMARY KEY (pid, row)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rows_at ON rows(at);
CREATE TABLE IF NOT EXISTS early (
    pid BLOB NOT NULL, row INTEGER NOT NULL, value REAL NOT NULL, weight REAL NOT NULL, received INTEGER NOT NULL,
    PRIMARY KEY (pid, row)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL, UNIQUE (kind, text));
CREATE TABLE IF NOT EXISTS aggregates (
    predictor INTEGER NOT NULL, model INTEGER NOT NULL, slice TEXT NOT NULL, hour INTEGER NOT NULL, stats BLOB NOT NULL,
    PRIMARY KEY (predictor, model, slice, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS regression (
    predictor INTEGER NOT NULL, model INTEGER NOT NULL, slice TEXT NOT NULL, hour INTEGER NOT NULL, stats BLOB NOT NULL,
    PRIMARY KEY (predictor, model, slice, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (source TEXT PRIMARY KEY, position INTEGER NOT NULL, ident TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

AggKey = tuple[int, int, str, int]  # predictor id, model id, slice label, hour


def pid_bytes(prediction_id: str) -> bytes:
    """sibyl's ids are 32 hex digits: 16 bytes stored; anything else is kept as its UTF-8 bytes."""
    if len(prediction_id) == 32:
        try:
            return bytes.fromhex(prediction_id)
        except ValueError:
            pass
    return prediction_id.encode()


class PartitionState:
    def __init__(self, path: Path, window_s: float, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.window_ns, self.max_bytes = path, int(window_s * 1e9), max_bytes
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut: offsets with it
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: ids are random, so lookups roam the tree
        self.db.executescript(SCHEMA)
        self._names: dict[tuple[str, str], int] = {
            (kind, text): i for i, kind, text in self.db.execute("SELECT id, kind, text FROM names")
        }
        self._texts = {i: text for (_, text), i in self._names.items()}
        self.aggregates: dict[AggKey, BinaryStats] = {}
        self._dirty: set[AggKey] = set()
        self._pending: dict[AggKey, tuple[list[float], list[float], list[float]]] = {}
        self._labels: dict[int, list[str]] = {}  # slices id -> its labels, split once
        self.counters: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.counters |= dict(self.db.execute("SELECT name, value FROM counters").fetchall())
        for predictor, model, slice_, hour, blob in self.db.execute("SELECT * FROM aggregates"):
            self.aggregates[(predictor, model, slice_, hour)] = BinaryStats.from_bytes(blob)
        self.regression: dict[AggKey, RegressionStats] = {}
        self._dirty_regression: set[AggKey] = set()
        for predictor, model, slice_, hour, blob in self.db.execute("SELECT * FROM regression"):
            self.regression[(predictor, model, slice_, hour)] = RegressionStats.from_bytes(blob)
        self.db.execute("BEGIN")

    # ---- names
    def name_id(self, kind: str, text: str) -> int:
        key = (kind, text)
        found = self._names.get(key)
        if found is None:
            cursor = self.db.execute("INSERT INTO names(kind, text) VALUES (?, ?)", key)
            found = self._names[key] = int(cursor.lastrowid or 0)
            self._texts[found] = text
        return found

    def text(self, name_id: int) -> str:
        return self._texts[name_id]

    # ---- the two streams
    def add_predictions(self, records: Iterable[tuple[Logged, list[list[str]] | None]]) -> None:
        """Prediction log records, each with its rows' slice labels (answering records) or None."""
        upserts: list[tuple[bytes, int, int, int, int | None, bytes]] = []
        for r, labels in records:
            if not r.prediction_id or not r.num_rows:
                continue
            pid, at = pid_bytes(r.prediction_id), r.sent_at_ns
            predictor = self.name_id("predictor", r.predictor)
            model = self.name_id("model", SEP.join((r.model, r.version, r.role)))
            pairs = np.empty(r.num_rows, PAIR)
            pairs["model"], pairs["score"] = model, r.scores
            for i in range(r.num_rows):
                slices = self.name_id("slices", SEP.join(labels[i])) if labels is not None else None
                upserts.append((pid, i, at, predictor, slices, pairs[i : i + 1].tobytes()))
        if not upserts:
            return
        # Rows already labelled (their outcome came with an earlier record of the call): add these scores now.
        self._load_keys((u[0], u[1]) for u in upserts)
        late_scored = self.db.execute(
            "SELECT k.pid, k.row, r.label, r.weight, r.slices, r.predictor, r.at FROM keys k "
            "CROSS JOIN rows r USING (pid, row) WHERE r.label IS NOT NULL"
        ).fetchall()
        self.db.executemany(
            "INSERT INTO rows(pid, row, at, predictor, slices, scores) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(pid, row) DO UPDATE SET scores = CAST(scores || excluded.scores AS BLOB), "
            "slices = COALESCE(excluded.slices, slices)",
            upserts,
        )
        if late_scored:
            new_scores = {(u[0], u[1]): u[5] for u in upserts}
            for pid, row, label, weight, slices, predictor, at in late_scored:
                self._aggregate(predictor, slices, at, label, weight, new_scores[(pid, row)])
        # Outcomes that came first: join them now.
        early = self.db.execute(
            "SELECT e.pid, e.row, e.value, e.weight FROM keys k CROSS JOIN early e USING (pid, row)"
        ).fetchall()
        if early:
            self.db.executemany("DELETE FROM early WHERE pid = ? AND row = ?", [(p, r) for p, r, _, _ in early])
            self.counters["early"] -= len(early)
            self._join([(p, r, v, w) for p, r, v, w in early])
        self._fold()

    def add_outcomes(self, outcomes: list[OutcomeRow], now_ns: int | None = None) -> None:
        now_ns = time.time_ns() if now_ns is None else now_ns
        fresh = []
        for o in outcomes:
            if o.observed_at_ns and o.observed_at_ns < now_ns - self.window_ns:
                self.counters["late"] += 1
            else:
                fresh.append((pid_bytes(o.prediction_id), o.row, o.value, o.weight))
        if fresh:
            self._join(fresh, now_ns)
        self._fold()

    def _join(self, outcomes: list[tuple[bytes, int, float, float]], now_ns: int | None = None) -> None:
        self._load_keys((p, r) for p, r, _, _ in outcomes)
        found = {
            (pid, row): (label, slices, scores, predictor, at)
            for pid, row, label, slices, scores, predictor, at in self.db.execute(
                "SELECT r.pid, r.row, r.label, r.slices, r.scores, r.predictor, r.at FROM keys k "
                "CROSS JOIN rows r USING (pid, row)"
            )
        }
        joined, early = [], []
        for pid, row, value, weight in outcomes:
            hit = found.get((pid, row))
            if hit is None:
                early.append((pid, row, value, weight, now_ns or time.time_ns()))
            elif hit[0] is not None:
                self.counters["duplicate"] += 1
            else:
                joined.append((value, weight, pid, row))
                found[(pid, row)] = (value, *hit[1:])  # a second outcome in the same batch is a duplicate
                _, slices, scores, predictor, at = hit
                self._aggregate(predictor, slices, at, value, weight, scores)
        if joined:
            self.db.executemany("UPDATE rows SET label = ?, weight = ? WHERE pid = ? AND row = ?", joined)
            self.counters["joined"] += len(joined)
        if early:
            cursor = self.db.executemany("INSERT OR IGNORE INTO early VALUES (?, ?, ?, ?, ?)", early)
            self.counters["early"] += cursor.rowcount
            self.counters["duplicate"] += len(early) - cursor.rowcount

    def _load_keys(self, keys: Iterable[tuple[bytes, int]]) -> None:
        """The batch's keys in a temporary table; joins read it as the outer loop (CROSS JOIN: SQLite's planner
        would otherwise scan the whole state and probe the keys, a cost that grows with the state)."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keys (pid BLOB, row INTEGER, PRIMARY KEY (pid, row))")
        self.db.execute("DELETE FROM keys")
        self.db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", keys)

    def _aggregate(
        self, predictor: int, slices: int | None, at: int, label: float, weight: float, scores: bytes
    ) -> None:
        """Queue one labelled row's scores for its aggregates; `_fold` adds the queue in one add() per key."""
        hour = at // HOUR_NS
        if slices is None:
            labels = ["all"]
        else:
            found = self._labels.get(slices)
            labels = found if found is not None else self._labels.setdefault(slices, self.text(slices).split(SEP))
        pending = self._pending
        for model, score in np.frombuffer(scores, PAIR).tolist():
            for slice_label in labels:
                lists = pending.get((predictor, model, slice_label, hour))
                if lists is None:
                    lists = pending[(predictor, model, slice_label, hour)] = ([], [], [])
                lists[0].append(label)
                lists[1].append(score)
                lists[2].append(weight)

    def _fold(self) -> None:
        """The queued rows into their statistics: binary (outcome 0/1, score a probability) or regression."""
        for key, lists in self._pending.items():
            y, s = np.asarray(lists[0], np.float64), np.asarray(lists[1], np.float32)
            w = np.asarray(lists[2], np.float64)
            finite = np.isfinite(y) & np.isfinite(s) & np.isfinite(w) & (w >= 0)
            binary = finite & ((y == 0.0) | (y == 1.0)) & (s >= 0.0) & (s <= 1.0)
            other = finite & ~binary
            self.counters["unscorable"] += int((~finite).sum())
            if binary.any():
                stats = self.aggregates.get(key)
                if stats is None:
                    stats = self.aggregates[key] = BinaryStats()
                stats.add(y[binary], s[binary], w[binary])
                self._dirty.add(key)
            if other.any():
                regression = self.regression.get(key)
                if regression is None:
                    regression = self.regression[key] = RegressionStats()
                regression.add(y[other], s[other].astype(np.float64), w[other])
                self._dirty_regression.add(key)
        self._pending.clear()

    # ---- offsets, the window, durability
    def offset(self, source: str) -> tuple[int, str] | None:
        row = self.db.execute("SELECT position, ident FROM offsets WHERE source = ?", (source,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def set_offset(self, source: str, position: int, ident: str = "") -> None:
        self.db.execute("INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)", (source, position, ident))

    def expire(self, now_ns: int | None = None) -> None:
        """Forget what is older than the window, then the oldest rows while the file is over its byte budget."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        edge = now_ns - self.window_ns
        unlabelled = self.db.execute("DELETE FROM rows WHERE at < ? AND label IS NULL", (edge,)).rowcount
        self.db.execute("DELETE FROM rows WHERE at < ?", (edge,))
        self.counters["evicted_unlabelled"] += unlabelled
        unknown = self.db.execute("DELETE FROM early WHERE received < ?", (edge,)).rowcount
        self.counters["unknown"] += unknown
        self.counters["early"] -= unknown
        old_hour = edge // HOUR_NS
        for key in [k for k in self.aggregates if k[3] < old_hour]:
            del self.aggregates[key]
            self._dirty.discard(key)
        for key in [k for k in self.regression if k[3] < old_hour]:
            del self.regression[key]
            self._dirty_regression.discard(key)
        self.db.execute("DELETE FROM aggregates WHERE hour < ?", (old_hour,))
        self.db.execute("DELETE FROM regression WHERE hour < ?", (old_hour,))
        while self.used_bytes() > self.max_bytes:
            oldest = self.db.execute("SELECT at FROM rows ORDER BY at LIMIT 1 OFFSET 1000").fetchone()
            if oldest is None:
                break
            self.counters["evicted_budget"] += self.db.execute("DELETE FROM rows WHERE at <= ?", oldest).rowcount

    def used_bytes(self) -> int:
        pages = (
            self.db.execute("PRAGMA page_count").fetchone()[0] - self.db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        return int(pages) * int(self.db.execute("PRAGMA page_size").fetchone()[0])

    def commit(self) -> None:
        """Make the batch durable: aggregates changed, counters, offsets (set before) in one transaction."""
        self.db.executemany(
            "INSERT OR REPLACE INTO aggregates VALUES (?, ?, ?, ?, ?)",
            [(*key, self.aggregates[key].to_bytes()) for key in self._dirty],
        )
        self._dirty.clear()
        self.db.executemany(
            "INSERT OR REPLACE INTO regression VALUES (?, ?, ?, ?, ?)",
            [(*key, self.regression[key].to_bytes()) for key in self._dirty_regression],
        )
        self._dirty_regression.clear()
        self.db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)", list(self.counters.items()))
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self) -> None:
        self.db.execute("ROLLBACK")  # what was not committed was not read: its offsets were not either
        self.db.close()

    # ---- reading (compare, metrics)
    def joined_rows(self, since_ns: int) -> list[tuple[bytes, int, str, int | None, float, float, bytes]]:
        return [
            (pid, row, self.text(predictor), slices, label, weight, scores)
            for pid, row, predictor, slices, label, weight, scores in self.db.execute(
                "SELECT pid, row, predictor, slices, label, weight, scores FROM rows "
                "WHERE label IS NOT NULL AND at >= ?",
                (since_ns,),
            )
        ]


def model_parts(text: str) -> tuple[str, str, str]:
    model, version, role = text.split(SEP)
    return model, version, role
