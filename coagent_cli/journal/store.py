"""The run journal: one SQLite database (WAL, synchronous=FULL) under `.coagent/`.

The daemon writes here before it acknowledges anything, so after a crash the journal
holds every decision it ever reported. Tables:

    events   append-only timeline: seq, ts, kind, agent, op_id, payload (JSON)
    effects  intent records: written BEFORE the workspace is touched, with the
             before-images needed to revert; `outcome` is set when the effect is over.
             An effect with no outcome is what `coagent recover` must finish or revert.
    ops      current state of each op (upserted): agent, rank, label, state, footprint,
             before/after images, and `detail`: what the executor needs to take the op
             up again after a restart (its request, merge base, snapshots, applied)
    launch   the workspace at launch, path -> image, so `undo --all` is byte-exact
    meta     small key/value facts about the run (JSON values)

One connection is shared by all threads behind a re-entrant lock (the daemon calls in
through asyncio.to_thread). Every public call is one transaction; `atomic()` groups
several into one. sqlite3 errors become JournalError here and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coagent_cli.errors import JournalError
from coagent_cli.journal.blobs import FileImage

SCHEMA_VERSION = 2  # 2: ops.detail

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    kind    TEXT NOT NULL,
    agent   TEXT,
    op_id   INTEGER,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_agent ON events(agent, seq);
CREATE TABLE IF NOT EXISTS effects (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id    INTEGER NOT NULL,
    action   TEXT NOT NULL,
    images   TEXT NOT NULL,
    begun_ts REAL NOT NULL,
    ended_ts REAL,
    outcome  TEXT
);
CREATE INDEX IF NOT EXISTS effects_open ON effects(outcome) WHERE outcome IS NULL;
CREATE TABLE IF NOT EXISTS ops (
    op_id      INTEGER PRIMARY KEY,
    agent      TEXT NOT NULL,
    rank       INTEGER NOT NULL,
    label      TEXT NOT NULL,
    state      TEXT NOT NULL,
    reads      TEXT NOT NULL,
    writes     TEXT NOT NULL,
    before     TEXT NOT NULL,
    after      TEXT NOT NULL,
    updated_ts REAL NOT NULL,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS launch (
    path  TEXT PRIMARY KEY,
    image TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

Images = Mapping[str, FileImage]


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    ts: float
    kind: str
    agent: str | None
    op_id: int | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Effect:
    """An intended change of the live state; `outcome` None means it never finished."""

    id: int
    op_id: int
    action: str
    images: dict[str, FileImage]  # before-images: what reverting this effect restores
    begun_ts: float
    ended_ts: float | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class OpRecord:
    op_id: int
    agent: str
    rank: int
    label: str  # what a person reads in `coagent log`: the command line or tool call
    state: str  # the daemon's word for it: admitted, applied, undone, dropped, ...
    reads: tuple[str, ...] = ()  # footprint keys, as strings
    writes: tuple[str, ...] = ()
    before: dict[str, FileImage] = field(default_factory=dict)
    after: dict[str, FileImage] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)  # the executor's, JSON-ready


class Journal:
    """The run's durable record. Build it with `Journal.open(path)`."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0

    @staticmethod
    def open(path: Path, *, clock: Callable[[], float] = time.time) -> "Journal":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        try:
            _prepare(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        return Journal(conn, clock)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot close journal: {exc}") from exc

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Group several calls into one transaction (re-entrant; the outermost commits)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._exec("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self._exec("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise
            finally:
                self._depth = 0

    # -- events -----------------------------------------------------------------------

    def record(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        agent: str | None = None,
        op_id: int | None = None,
    ) -> int:
        """Append one event; returns its seq once it is durable."""
        sql = "INSERT INTO events(ts, kind, agent, op_id, payload) VALUES (?, ?, ?, ?, ?)"
        with self.atomic():
            cur = self._exec(sql, (self._clock(), kind, agent, op_id, _dump(payload)))
        return _rowid(cur)

    def timeline(self, agent: str | None = None, *, after_seq: int = 0) -> list[Event]:
        sql = "SELECT seq, ts, kind, agent, op_id, payload FROM events WHERE seq > ?"
        args: tuple[Any, ...] = (after_seq,)
        if agent is not None:
            sql, args = sql + " AND agent = ?", (after_seq, agent)
        rows = self._query(sql + " ORDER BY seq", args)
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- effects ----------------------------------------------------------------------

    def begin_effect(self, op_id: int, action: str, images: Images) -> int:
        """Write the intent (with before-images) before the live state is touched."""
        sql = "INSERT INTO effects(op_id, action, images, begun_ts) VALUES (?, ?, ?, ?)"
        with self.atomic():
            cur = self._exec(sql, (op_id, action, _dump_images(images), self._clock()))
        return _rowid(cur)

    def end_effect(self, effect_id: int, outcome: str) -> None:
        sql = "UPDATE effects SET outcome = ?, ended_ts = ? WHERE id = ? AND outcome IS NULL"
        with self.atomic():
            cur = self._exec(sql, (outcome, self._clock(), effect_id))
        if cur.rowcount != 1:
            raise JournalError(f"effect {effect_id} is unknown or already ended")

    def open_effects(self) -> list[Effect]:
        """Effects begun and never ended, oldest first: what recover must settle."""
        return self._effects("WHERE outcome IS NULL")

    def effects(self, op_id: int | None = None) -> list[Effect]:
        if op_id is None:
            return self._effects("")
        return self._effects("WHERE op_id = ?", (op_id,))

    def _effects(self, where: str, args: tuple[Any, ...] = ()) -> list[Effect]:
        sql = f"SELECT id, op_id, action, images, begun_ts, ended_ts, outcome FROM effects {where}"
        rows = self._query(sql + " ORDER BY id", args)
        return [Effect(r[0], r[1], r[2], _load_images(r[3]), r[4], r[5], r[6]) for r in rows]

    # -- ops --------------------------------------------------------------------------

    def upsert_op(self, op: OpRecord) -> None:
        sql = """INSERT INTO ops(op_id, agent, rank, label, state, reads, writes, before, after,
                                 updated_ts, detail)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT(op_id) DO UPDATE SET
                   agent=excluded.agent, rank=excluded.rank, label=excluded.label,
                   state=excluded.state, reads=excluded.reads, writes=excluded.writes,
                   before=excluded.before, after=excluded.after, updated_ts=excluded.updated_ts,
                   detail=excluded.detail"""
        row = (
            op.op_id, op.agent, op.rank, op.label, op.state,
            _dump(list(op.reads)), _dump(list(op.writes)),
            _dump_images(op.before), _dump_images(op.after), self._clock(), _dump(op.detail),
        )  # fmt: skip
        with self.atomic():
            self._exec(sql, row)

    def set_op_state(self, op_id: int, state: str) -> None:
        sql = "UPDATE ops SET state = ?, updated_ts = ? WHERE op_id = ?"
        with self.atomic():
            cur = self._exec(sql, (state, self._clock(), op_id))
        if cur.rowcount != 1:
            raise JournalError(f"op {op_id} is not in the journal")

    def op(self, op_id: int) -> OpRecord | None:
        found = self._ops("WHERE op_id = ?", (op_id,))
        return found[0] if found else None

    def ops(self, agent: str | None = None) -> list[OpRecord]:
        if agent is None:
            return self._ops("")
        return self._ops("WHERE agent = ?", (agent,))

    def _ops(self, where: str, args: tuple[Any, ...] = ()) -> list[OpRecord]:
        cols = "op_id, agent, rank, label, state, reads, writes, before, after, detail"
        rows = self._query(f"SELECT {cols} FROM ops {where} ORDER BY op_id", args)
        return [_op_from_row(r) for r in rows]

    # -- launch manifest and meta -----------------------------------------------------

    def record_launch(self, images: Images) -> None:
        """Store the workspace as it was at launch. Written once per journal."""
        with self.atomic():
            if self.get_meta("launch_recorded") is not None:
                raise JournalError("the launch manifest is already recorded")
            rows = [(p, _dump(img.to_json())) for p, img in sorted(images.items())]
            self._executemany("INSERT INTO launch(path, image) VALUES (?, ?)", rows)
            self._exec("INSERT OR REPLACE INTO meta VALUES ('launch_recorded', 'true')")

    def launch_manifest(self) -> dict[str, FileImage] | None:
        """The launch manifest, or None if none was recorded (distinct from an empty one)."""
        if self.get_meta("launch_recorded") is None:
            return None
        rows = self._query("SELECT path, image FROM launch ORDER BY path")
        return {p: FileImage.from_json(json.loads(i)) for p, i in rows}

    def set_meta(self, key: str, value: Any) -> None:
        with self.atomic():
            self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, _dump(value)))

    def get_meta(self, key: str) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    # -- sqlite edge ------------------------------------------------------------------

    def pragma(self, name: str) -> Any:
        """Read one pragma (journal_mode, synchronous, ...); for checks and tests."""
        if not name.isidentifier():
            raise JournalError(f"not a pragma name: {name!r}")
        return self._query(f"PRAGMA {name}")[0][0]

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._conn.execute(sql, args)
            except sqlite3.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from exc

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            try:
                self._conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed: {exc}") from exc


def _prepare(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"WAL mode refused (got {mode})")
    conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only kill -9
    conn.execute("PRAGMA foreign_keys=ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"journal schema {version} is newer than {SCHEMA_VERSION}")
    conn.executescript(_SCHEMA)
    if version == 1:  # a journal of the first schema: ops had no detail column
        conn.execute("ALTER TABLE ops ADD COLUMN detail TEXT NOT NULL DEFAULT '{}'")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _rowid(cur: sqlite3.Cursor) -> int:
    if cur.lastrowid is None:
        raise JournalError("insert returned no row id")
    return cur.lastrowid


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _dump_images(images: Images) -> str:
    return _dump({p: img.to_json() for p, img in images.items()})


def _load_images(text: str) -> dict[str, FileImage]:
    return {p: FileImage.from_json(d) for p, d in json.loads(text).items()}


def _op_from_row(r: tuple[Any, ...]) -> OpRecord:
    return OpRecord(
        op_id=r[0], agent=r[1], rank=r[2], label=r[3], state=r[4],
        reads=tuple(json.loads(r[5])), writes=tuple(json.loads(r[6])),
        before=_load_images(r[7]), after=_load_images(r[8]), detail=json.loads(r[9]),
    )  # fmt: skip
