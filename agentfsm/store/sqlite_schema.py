"""The SQLite store's schema, as an ordered list of migrations.

Migration i (0-based) brings a store from schema version i to i + 1. A migration is a
tuple of single SQL statements, run one by one inside the store's migration transaction
(`executescript` would commit on its own, so it is not used). Never edit a released
migration: append a new one and bump `SCHEMA_VERSION`.
"""

from __future__ import annotations

from agentfsm.store.team_rows import SQLITE_TABLES, TABLE_NAMES

Migration = tuple[str, ...]

_V1: Migration = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE sources(digest TEXT PRIMARY KEY, text TEXT NOT NULL)",
    """CREATE TABLE runs(
        id TEXT PRIMARY KEY,
        machine TEXT NOT NULL,
        digest TEXT,
        path TEXT,
        status TEXT NOT NULL,
        head TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        inputs TEXT,
        llms TEXT,
        output TEXT,
        error TEXT,
        usage TEXT,
        steps INTEGER NOT NULL,
        waiting TEXT,
        wake_at REAL,
        lease_owner TEXT,
        lease_expires REAL
    )""",
    "CREATE INDEX runs_by_creation ON runs(created_at)",
    "CREATE INDEX runs_by_status ON runs(status, created_at)",
    "CREATE INDEX runs_due ON runs(status, wake_at)",
    # delete_runs looks for sources no run references any more
    "CREATE INDEX runs_by_digest ON runs(digest)",
    """CREATE TABLE branches(
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        parent TEXT,
        fork INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY(run_id, name)
    )""",
    # a rowid table (not WITHOUT ROWID): context snapshots can be large rows
    """CREATE TABLE steps(
        run_id TEXT NOT NULL,
        branch TEXT NOT NULL,
        step INTEGER NOT NULL,
        state TEXT,
        event TEXT,
        event_data TEXT,
        next_state TEXT,
        started_at REAL NOT NULL,
        duration REAL NOT NULL,
        retries INTEGER NOT NULL,
        error TEXT,
        result TEXT,
        calls TEXT,
        context_kind TEXT,
        context TEXT,
        PRIMARY KEY(run_id, branch, step)
    )""",
    """CREATE TABLE checkpoints(
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        branch TEXT NOT NULL,
        point INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY(run_id, name)
    )""",
    """CREATE TABLE events(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT,
        created_at REAL NOT NULL,
        taken_branch TEXT,
        taken_step INTEGER
    )""",
    "CREATE INDEX events_by_run ON events(run_id, taken_step)",
)

_V2: Migration = (
    # child runs (a nested machine, a parallel branch, a team agent) name their parent
    "ALTER TABLE runs ADD COLUMN parent_run TEXT",
    "ALTER TABLE runs ADD COLUMN parent_step INTEGER",
    "ALTER TABLE runs ADD COLUMN child_name TEXT",
    "CREATE INDEX runs_by_parent ON runs(parent_run, created_at)",
    # the inputs leave the row every step rewrites (a 1 MB input made every step 225 us slower); the old
    # column stays, empty, so the migration needs no table rebuild
    "CREATE TABLE run_inputs(run_id TEXT PRIMARY KEY, inputs TEXT NOT NULL)",
    "INSERT INTO run_inputs (run_id, inputs) SELECT id, COALESCE(inputs, '{}') FROM runs",
    "UPDATE runs SET inputs = NULL",
    # what a run's path added up to (visits, usage, bindings), now and then, so positions are read in O(1)
    "ALTER TABLE steps ADD COLUMN tally TEXT",
)

_V3: Migration = (
    # workers (`agentfsm worker`) register themselves and beat; `agentfsm workers` lists the live ones
    """CREATE TABLE workers(
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        concurrency INTEGER NOT NULL,
        machine TEXT
    )""",
    # queued runs are claimed oldest first; runs held by a worker are counted by owner
    "CREATE INDEX runs_by_owner ON runs(lease_owner)",
)

_V4: Migration = (
    # a run's trace: a step's entries ride in the step's own row (one more table written every step made a
    # recorded step 50% slower: another page or two to the WAL per commit)...
    "ALTER TABLE steps ADD COLUMN trace_seq INTEGER",
    "ALTER TABLE steps ADD COLUMN trace_last INTEGER",
    "ALTER TABLE steps ADD COLUMN trace TEXT",
    # ...and entries outside any step (a run's end, a rollback, an interruption) have rows of their own
    """CREATE TABLE trace(
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        last INTEGER NOT NULL,
        branch TEXT NOT NULL,
        step INTEGER NOT NULL,
        entries TEXT NOT NULL,
        PRIMARY KEY(run_id, seq)
    )""",
    # large trace values (prompts, replies, tool results), kept once per run and content digest
    """CREATE TABLE payloads(
        run_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY(run_id, digest)
    )""",
)

_V5: Migration = SQLITE_TABLES  # teams' message buses and shared memories

_V6: Migration = (
    # breakpoints set on a run (`agentfsm break RUN STATE`, `run --break`): a JSON list of `STATE[:GUARD]`
    "ALTER TABLE runs ADD COLUMN breakpoints TEXT",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema this code writes and reads (6)."""

OUR_TABLES: frozenset[str] = frozenset({"meta", "sources", "runs", "branches", "steps", "checkpoints", "events",
                                        "run_inputs", "workers", "trace", "payloads"}) | TABLE_NAMES
