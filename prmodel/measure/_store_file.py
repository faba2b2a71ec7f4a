"""Opening the store's SQLite file: its schema, creating it whole, read-only connections, and
what to tell the user about a file that cannot be used."""

from __future__ import annotations

import errno
import os
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from prmodel.errors import PrmodelError
from prmodel.measure._store_rows import INT_LAYER_COLUMNS

SCHEMA_VERSION = 1

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    fingerprint TEXT,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (target_id, fingerprint_hash)
);
CREATE TABLE IF NOT EXISTS measurements (
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    {", ".join(f"{c} INTEGER NOT NULL" for c in INT_LAYER_COLUMNS)},
    activation TEXT,
    residual INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error TEXT,
    latency_us REAL, median_us REAL, min_us REAL, p10_us REAL, p90_us REAL, mean_us REAL,
    n INTEGER NOT NULL, rounds INTEGER NOT NULL,
    wall_median_us REAL, reorder_median_us REAL,
    extra TEXT NOT NULL,
    measured_at TEXT NOT NULL,
    PRIMARY KEY (target_id, fingerprint_hash, layer_key)
);
CREATE INDEX IF NOT EXISTS measurements_kind ON measurements (target_id, kind);
CREATE TABLE IF NOT EXISTS plan_members (
    plan TEXT NOT NULL,
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (plan, target_id, fingerprint_hash, layer_key)
);
CREATE INDEX IF NOT EXISTS plan_members_layer
    ON plan_members (target_id, fingerprint_hash, layer_key);
CREATE TABLE IF NOT EXISTS measured_by (
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    worker TEXT NOT NULL,
    host TEXT NOT NULL,
    PRIMARY KEY (target_id, fingerprint_hash, layer_key)
);
CREATE TABLE IF NOT EXISTS claims (
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (target_id, fingerprint_hash, layer_key)
);
CREATE INDEX IF NOT EXISTS claims_owner ON claims (owner);
"""


class StoreError(PrmodelError):
    """A store that cannot be opened or written, or an export to an unknown format."""


def refuse_unusable(path: Path, *, readonly: bool) -> None:
    if path.is_dir():
        raise StoreError(f"measurement store {path} is a folder, not an SQLite file")
    if readonly and not path.is_file():
        raise StoreError(f"no measurement store at {path}; run 'prmodel sweep' first")
    if path.is_file() and path.stat().st_size == 0:
        raise StoreError(
            f"measurement store {path} is an empty file (0 bytes), not a store: it was "
            "truncated or never written; restore it from a backup, or delete it to start "
            "an empty store"
        )


def create_atomically(path: Path) -> None:
    """Make a new store whole under a temporary name, then link it into place.

    Whoever opens ``path`` sees no file or a complete store, never the empty file that
    ``sqlite3.connect`` leaves for an instant (which would be refused as truncated).
    """
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot make the folder {path.parent}: {exc.strerror}") from None
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        with closing(sqlite3.connect(temporary)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(SCHEMA)
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot create measurement store {path}: {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreError(
                f"cannot create measurement store {path}: {str(exc.strerror).lower()}"
            ) from None
        # A file system without hard links: SQLite creates the file itself.
    finally:
        for leftover in (temporary, *(Path(f"{temporary}{x}") for x in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes ``path`` or beside it."""
    uri = f"file:{quote(str(path.resolve()))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    # A WAL store on read-only media: SQLite cannot make the -shm file it reads through, and
    # nobody can be writing there, so the file is read as it is.
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def shadow_missing_tables(conn: sqlite3.Connection) -> None:
    """Empty TEMP tables for those a read-only store predates, so every query runs."""
    present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    for statement in SCHEMA.split(";"):
        words = statement.split()
        if words[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"] and words[5] not in present:
            conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))


def open_problem(path: Path, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    unwritable = path.parent.is_dir() and not os.access(path.parent, os.W_OK)
    if "readonly" in text or "read-only" in text or unwritable:
        return (
            f"measurement store {path} is read-only ({text}); reading commands (show, "
            "export, estimate, models) work, but this one writes: copy the workspace to a "
            "writable folder"
        )
    if "not a database" in text:
        return (
            f"cannot open measurement store {path}: it is not an SQLite file (another file "
            "in its place, or its first page is damaged)"
        )
    if "malformed" in text:
        return corrupt_message(path, [text])
    return f"cannot open measurement store {path}: {text}"


def corrupt_message(path: Path, problems: list[str]) -> str:
    return (
        f"measurement store {path} is damaged (SQLite: {problems[0]}); keep the file, and "
        f"recover what is readable into a new store with `sqlite3 {path} .recover | sqlite3 "
        f"recovered.sqlite`, then put recovered.sqlite in its place (or export what "
        "`prmodel export` can still read)"
    )
