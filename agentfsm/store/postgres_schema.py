"""The PostgreSQL store's schema, as an ordered list of migrations (its own numbering, from 1).

Migration i (0-based) brings a store from schema version i to i + 1; all of a store's pending
migrations run in one transaction (PostgreSQL's DDL is transactional) under an advisory lock, so
processes opening a new store at once do not race. Never edit a released migration: append one.
Tables live in the store's own schema (`agentfsm` unless the URL says `?schema=`); statements
name tables without a schema (the connection's search_path is that schema).
JSON values are TEXT, as in SQLite: a context's snapshot or patch comes back as the very text given.
Ids compare in the "C" collation, so a prefix is a range of the index, ordered by code point.
"""

from __future__ import annotations

from agentfsm.store.team_rows import TABLE_NAMES, postgres_tables

Migration = tuple[str, ...]

_V1: Migration = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE sources(digest TEXT PRIMARY KEY, text TEXT NOT NULL)",
    """CREATE TABLE runs(
        id TEXT COLLATE "C" PRIMARY KEY,
        machine TEXT NOT NULL,
        digest TEXT,
        path TEXT,
        status TEXT NOT NULL,
        head TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        llms TEXT,
        output TEXT,
        error TEXT,
        usage TEXT,
        steps INTEGER NOT NULL,
        waiting TEXT,
        wake_at DOUBLE PRECISION,
        lease_owner TEXT,
        lease_expires DOUBLE PRECISION,
        parent_run TEXT,
        parent_step INTEGER,
        child_name TEXT
    )""",
    "CREATE INDEX runs_by_creation ON runs(created_at, id)",
    "CREATE INDEX runs_by_status ON runs(status, created_at)",
    "CREATE INDEX runs_due ON runs(status, wake_at)",
    "CREATE INDEX runs_by_digest ON runs(digest)",
    "CREATE INDEX runs_by_parent ON runs(parent_run, created_at)",
    "CREATE TABLE run_inputs(run_id TEXT COLLATE \"C\" PRIMARY KEY, inputs TEXT NOT NULL)",
    """CREATE TABLE branches(
        run_id TEXT COLLATE "C" NOT NULL,
        name TEXT NOT NULL,
        parent TEXT,
        fork INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        seq BIGSERIAL,
        PRIMARY KEY(run_id, name)
    )""",
    """CREATE TABLE steps(
        run_id TEXT COLLATE "C" NOT NULL,
        branch TEXT NOT NULL,
        step INTEGER NOT NULL,
        state TEXT,
        event TEXT,
        event_data TEXT,
        next_state TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        retries INTEGER NOT NULL,
        error TEXT,
        result TEXT,
        calls TEXT,
        context_kind TEXT,
        context TEXT,
        tally TEXT,
        PRIMARY KEY(run_id, branch, step)
    )""",
    """CREATE TABLE checkpoints(
        run_id TEXT COLLATE "C" NOT NULL,
        name TEXT NOT NULL,
        branch TEXT NOT NULL,
        point INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        seq BIGSERIAL,
        PRIMARY KEY(run_id, name)
    )""",
    """CREATE TABLE events(
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT COLLATE "C" NOT NULL,
        name TEXT NOT NULL,
        data TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        taken_branch TEXT,
        taken_step INTEGER
    )""",
    "CREATE INDEX events_by_run ON events(run_id, taken_step)",
)

_V2: Migration = (
    """CREATE TABLE workers(
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        concurrency INTEGER NOT NULL,
        machine TEXT
    )""",
    "CREATE INDEX runs_by_owner ON runs(lease_owner)",
)

_V3: Migration = (
    # a run's trace (as in SQLite, see sqlite_schema._V4): a step's entries in its row, the others apart
    "ALTER TABLE steps ADD COLUMN trace_seq INTEGER",
    "ALTER TABLE steps ADD COLUMN trace_last INTEGER",
    "ALTER TABLE steps ADD COLUMN trace TEXT",
    """CREATE TABLE trace(
        run_id TEXT COLLATE "C" NOT NULL,
        seq INTEGER NOT NULL,
        last INTEGER NOT NULL,
        branch TEXT NOT NULL,
        step INTEGER NOT NULL,
        entries TEXT NOT NULL,
        PRIMARY KEY(run_id, seq)
    )""",
    """CREATE TABLE payloads(
        run_id TEXT COLLATE "C" NOT NULL,
        digest TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY(run_id, digest)
    )""",
)

_V4: Migration = postgres_tables()  # teams' message buses and shared memories

_V5: Migration = (
    # breakpoints set on a run (as in SQLite, see sqlite_schema._V6)
    "ALTER TABLE runs ADD COLUMN breakpoints TEXT",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema this code writes and reads."""

OUR_TABLES: frozenset[str] = frozenset({"meta", "sources", "runs", "branches", "steps", "checkpoints", "events",
                                        "run_inputs", "workers", "trace", "payloads"}) | TABLE_NAMES
