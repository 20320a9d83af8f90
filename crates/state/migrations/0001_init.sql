-- Quest state, schema version 1: threads, turns, rollout, goals, goal audit trail, goal leases.

CREATE TABLE threads (
    id              TEXT PRIMARY KEY,
    cwd             TEXT NOT NULL,
    model           TEXT NOT NULL,
    model_provider  TEXT NOT NULL,
    title           TEXT NULL,
    preview         TEXT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX threads_by_update ON threads (updated_at_ms DESC);

CREATE TABLE turns (
    id              TEXT PRIMARY KEY,
    thread_id       TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    turn_trigger    TEXT NOT NULL CHECK (turn_trigger IN ('user', 'goal', 'exec')),
    status          TEXT NOT NULL
                    CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    usage_json      TEXT NULL,
    error           TEXT NULL,
    started_at_ms   INTEGER NOT NULL,
    ended_at_ms     INTEGER NULL,
    UNIQUE (thread_id, seq)
);

CREATE TABLE rollout_items (
    thread_id       TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    turn_id         TEXT NULL,
    item_json       TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
) WITHOUT ROWID;

CREATE TABLE thread_goals (
    thread_id                  TEXT PRIMARY KEY,
    goal_id                    TEXT NOT NULL,
    objective                  TEXT NOT NULL,
    status                     TEXT NOT NULL CHECK (status IN
                               ('active', 'paused', 'blocked', 'usage_limited', 'budget_limited', 'complete')),
    token_budget               INTEGER NULL,
    tokens_used                INTEGER NOT NULL DEFAULT 0,
    time_used_seconds          INTEGER NOT NULL DEFAULT 0,
    created_at_ms              INTEGER NOT NULL,
    updated_at_ms              INTEGER NOT NULL,
    time_budget_seconds        INTEGER NULL,
    turn_budget                INTEGER NULL,
    turns_used                 INTEGER NOT NULL DEFAULT 0,
    budget_limit_kind          TEXT NULL CHECK (budget_limit_kind IN ('tokens', 'time', 'turns')),
    usage_limit_resets_at      INTEGER NULL,
    auto_resume_at_reset       INTEGER NOT NULL DEFAULT 0,
    last_auto_resume_reset_at  INTEGER NULL,
    no_progress_streak         INTEGER NOT NULL DEFAULT 0,
    blocker_streak             INTEGER NOT NULL DEFAULT 0,
    last_blocker_fingerprint   TEXT NULL,
    first_turn_trace_context   TEXT NULL,
    last_actor                 TEXT NULL,
    last_reason                TEXT NULL,
    last_transition_at_ms      INTEGER NULL
);

CREATE TABLE thread_goal_continuation_deferrals (
    thread_id  TEXT PRIMARY KEY REFERENCES thread_goals (thread_id) ON DELETE CASCADE
);

CREATE TABLE thread_goal_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id    TEXT NOT NULL,
    goal_id      TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    actor        TEXT NOT NULL CHECK (actor IN ('user', 'model', 'system')),
    kind         TEXT NOT NULL,
    from_status  TEXT NULL,
    to_status    TEXT NULL,
    reason       TEXT NOT NULL,
    origin       TEXT NULL CHECK (origin IN ('user', 'automatic')),
    turn_id      TEXT NULL,
    detail_json  TEXT NOT NULL
);
CREATE INDEX thread_goal_events_by_thread ON thread_goal_events (thread_id, id);

CREATE TABLE goal_leases (
    thread_id        TEXT PRIMARY KEY,
    holder_id        TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    process_start    TEXT NULL,
    started_at_ms    INTEGER NOT NULL,
    heartbeat_at_ms  INTEGER NOT NULL
);
