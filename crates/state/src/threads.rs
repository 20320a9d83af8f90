//! Threads, turns and the rollout (the durable, append-only conversation history).

use quest_protocol::transcript::{TranscriptEntry, TranscriptItem};
use quest_protocol::{CompactedHistory, LoadedHistory, ResponseItem, ThreadId, TokenUsage, TurnId};

/// How a compaction record's JSON starts (serde writes the tag first); ordinary items never
/// start this way because their `type` is a Responses item type.
const COMPACTED_PREFIX: &str = r#"{"type":"compacted","#;
use rusqlite::{OptionalExtension, Row, params};

use crate::error::{StateError, corrupt};
use crate::store::{Store, now_ms};

/// A thread to create. Ephemeral threads are never stored, so there is no flag for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewThread {
    /// Thread id (UUID v7).
    pub id: ThreadId,
    /// Working directory the thread runs in.
    pub cwd: String,
    /// Model slug.
    pub model: String,
    /// Model provider id (`openai`, a `[model_providers]` key, …).
    pub model_provider: String,
}

/// A stored thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadRecord {
    /// Thread id.
    pub id: ThreadId,
    /// Working directory.
    pub cwd: String,
    /// Model slug.
    pub model: String,
    /// Model provider id.
    pub model_provider: String,
    /// Title, when one was set.
    pub title: Option<String>,
    /// Preview text (first user message or goal objective).
    pub preview: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds; bumped by every append and turn change.
    pub updated_at_ms: i64,
}

/// What started a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurnTrigger {
    /// A user message in an interactive front-end.
    User,
    /// A hidden goal continuation.
    Goal,
    /// A `quest exec` prompt.
    Exec,
}

impl TurnTrigger {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnTrigger::User => "user",
            TurnTrigger::Goal => "goal",
            TurnTrigger::Exec => "exec",
        }
    }

    fn parse(text: &str) -> Option<TurnTrigger> {
        [TurnTrigger::User, TurnTrigger::Goal, TurnTrigger::Exec]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// Lifecycle state of a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurnStatus {
    /// Started and not ended (or its process died; see [`Store::interrupt_running_turns`]).
    Running,
    /// Ended normally.
    Completed,
    /// Ended with an error.
    Failed,
    /// Ended by an interrupt or by the death of its process.
    Interrupted,
}

impl TurnStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Running => "running",
            TurnStatus::Completed => "completed",
            TurnStatus::Failed => "failed",
            TurnStatus::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Option<TurnStatus> {
        [
            TurnStatus::Running,
            TurnStatus::Completed,
            TurnStatus::Failed,
            TurnStatus::Interrupted,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// A stored turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnRecord {
    /// Turn id.
    pub id: TurnId,
    /// Owning thread.
    pub thread_id: ThreadId,
    /// 1-based position within the thread.
    pub seq: i64,
    /// What started it.
    pub trigger: TurnTrigger,
    /// Lifecycle state.
    pub status: TurnStatus,
    /// Summed token usage, once known.
    pub usage: Option<TokenUsage>,
    /// Error text of a failed turn.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds, once ended.
    pub ended_at_ms: Option<i64>,
}

const THREAD_COLUMNS: &str =
    "id, cwd, model, model_provider, title, preview, created_at_ms, updated_at_ms";
const TURN_COLUMNS: &str = "id, thread_id, seq, turn_trigger, status, usage_json, error, \
                            started_at_ms, ended_at_ms";

fn parse_id<T: std::str::FromStr>(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> Result<T, StateError>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>()
        .map_err(|e| corrupt(table, column, text, e))
}

fn thread_from_row(row: &Row<'_>) -> Result<ThreadRecord, StateError> {
    let id: String = row.get(0)?;
    Ok(ThreadRecord {
        id: parse_id("threads", "id", &id)?,
        cwd: row.get(1)?,
        model: row.get(2)?,
        model_provider: row.get(3)?,
        title: row.get(4)?,
        preview: row.get(5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
    })
}

fn turn_from_row(row: &Row<'_>) -> Result<TurnRecord, StateError> {
    let id: String = row.get(0)?;
    let thread_id: String = row.get(1)?;
    let trigger: String = row.get(3)?;
    let status: String = row.get(4)?;
    let usage: Option<String> = row.get(5)?;
    Ok(TurnRecord {
        id: parse_id("turns", "id", &id)?,
        thread_id: parse_id("turns", "thread_id", &thread_id)?,
        seq: row.get(2)?,
        trigger: TurnTrigger::parse(&trigger)
            .ok_or_else(|| corrupt("turns", "turn_trigger", &trigger, "unknown trigger"))?,
        status: TurnStatus::parse(&status)
            .ok_or_else(|| corrupt("turns", "status", &status, "unknown status"))?,
        usage: usage
            .map(|u| serde_json::from_str(&u).map_err(|e| corrupt("turns", "usage_json", &u, e)))
            .transpose()?,
        error: row.get(6)?,
        started_at_ms: row.get(7)?,
        ended_at_ms: row.get(8)?,
    })
}

fn collect<T>(
    rows: rusqlite::Rows<'_>,
    decode: impl Fn(&Row<'_>) -> Result<T, StateError>,
) -> Result<Vec<T>, StateError> {
    let mut rows = rows;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

impl Store {
    /// Stores a new thread. Fails with a constraint error if the id already exists.
    pub fn create_thread(&self, thread: &NewThread) -> Result<ThreadRecord, StateError> {
        let now = now_ms();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO threads (id, cwd, model, model_provider, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![
                    thread.id.to_string(),
                    thread.cwd,
                    thread.model,
                    thread.model_provider,
                    now
                ],
            )?;
            Ok(())
        })?;
        Ok(ThreadRecord {
            id: thread.id,
            cwd: thread.cwd.clone(),
            model: thread.model.clone(),
            model_provider: thread.model_provider.clone(),
            title: None,
            preview: None,
            created_at_ms: now,
            updated_at_ms: now,
        })
    }

    /// The thread with this id, if stored.
    pub fn get_thread(&self, id: &ThreadId) -> Result<Option<ThreadRecord>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {THREAD_COLUMNS} FROM threads WHERE id = ?1"
            ))?;
            let rows = stmt.query(params![id.to_string()])?;
            Ok(collect(rows, thread_from_row)?.into_iter().next())
        })
    }

    /// Threads, most recently updated first, at most `limit`.
    pub fn list_threads(&self, limit: usize) -> Result<Vec<ThreadRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {THREAD_COLUMNS} FROM threads ORDER BY updated_at_ms DESC, id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query(params![limit])?;
            collect(rows, thread_from_row)
        })
    }

    /// The most recently updated thread, optionally only among threads started in `cwd`.
    pub fn latest_thread(&self, cwd: Option<&str>) -> Result<Option<ThreadRecord>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {THREAD_COLUMNS} FROM threads WHERE (?1 IS NULL OR cwd = ?1)
                 ORDER BY updated_at_ms DESC, id DESC LIMIT 1"
            ))?;
            let rows = stmt.query(params![cwd])?;
            Ok(collect(rows, thread_from_row)?.into_iter().next())
        })
    }

    /// Sets the preview only if the thread has none yet (an objective or first message never
    /// overwrites an existing preview). Returns whether it was set.
    pub fn fill_thread_preview(&self, id: &ThreadId, preview: &str) -> Result<bool, StateError> {
        let now = now_ms();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE threads SET preview = ?2, updated_at_ms = MAX(updated_at_ms, ?3)
                 WHERE id = ?1 AND (preview IS NULL OR preview = '')",
                params![id.to_string(), preview, now],
            )?;
            Ok(n > 0)
        })
    }

    /// Sets the title.
    pub fn set_thread_title(&self, id: &ThreadId, title: &str) -> Result<(), StateError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE threads SET title = ?2 WHERE id = ?1",
                params![id.to_string(), title],
            )?;
            if n == 0 {
                return Err(StateError::NotFound {
                    what: "thread",
                    id: id.to_string(),
                });
            }
            Ok(())
        })
    }

    /// Records the start of a turn; its `seq` is one more than the thread's last turn.
    pub fn begin_turn(
        &self,
        thread_id: &ThreadId,
        turn_id: &TurnId,
        trigger: TurnTrigger,
    ) -> Result<TurnRecord, StateError> {
        let now = now_ms();
        let seq = self.write(|tx| begin_turn_tx(tx, thread_id, turn_id, trigger, now))?;
        Ok(TurnRecord {
            id: *turn_id,
            thread_id: *thread_id,
            seq,
            trigger,
            status: TurnStatus::Running,
            usage: None,
            error: None,
            started_at_ms: now,
            ended_at_ms: None,
        })
    }

    /// Records the end of a turn.
    pub fn finish_turn(
        &self,
        turn_id: &TurnId,
        status: TurnStatus,
        usage: Option<&TokenUsage>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let usage_json = encode_usage(usage)?;
        let now = now_ms();
        self.write(|tx| finish_turn_tx(tx, turn_id, status, usage_json.as_deref(), error, now))
    }

    /// Marks the thread's turns still `running` as `interrupted` (their process died). Returns
    /// how many were changed. Call on load, after checking that no live process owns the thread.
    pub fn interrupt_running_turns(&self, thread_id: &ThreadId) -> Result<usize, StateError> {
        let now = now_ms();
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE turns SET status = 'interrupted', ended_at_ms = ?2
                 WHERE thread_id = ?1 AND status = 'running'",
                params![thread_id.to_string(), now],
            )?)
        })
    }

    /// The thread's turns in order.
    pub fn list_turns(&self, thread_id: &ThreadId) -> Result<Vec<TurnRecord>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TURN_COLUMNS} FROM turns WHERE thread_id = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query(params![thread_id.to_string()])?;
            collect(rows, turn_from_row)
        })
    }

    /// Appends items to the thread's rollout in one durable transaction and returns the `seq` of
    /// the last one (items are numbered from 1). The thread must exist.
    pub fn append_rollout(
        &self,
        thread_id: &ThreadId,
        turn_id: Option<&TurnId>,
        items: &[ResponseItem],
    ) -> Result<i64, StateError> {
        let encoded = encode_items(items)?;
        let now = now_ms();
        self.write(|tx| append_rollout_tx(tx, thread_id, turn_id, &encoded, now))
    }

    /// Records a compaction: one durable row that replaces every earlier item of the thread when
    /// the rollout is loaded. Until this returns, a load still yields the history from before
    /// the compaction, so a process that dies while compacting loses nothing.
    pub fn append_compaction(
        &self,
        thread_id: &ThreadId,
        turn_id: Option<&TurnId>,
        compaction: &CompactedHistory,
    ) -> Result<i64, StateError> {
        let encoded = encode_compaction(compaction)?;
        let now = now_ms();
        self.write(|tx| append_rollout_tx(tx, thread_id, turn_id, &[encoded], now))
    }

    /// The thread's history to send: exactly the items appended, except that a compaction
    /// record replaces everything before it with its replacement history. A resumed thread
    /// re-sends the history it had.
    pub fn load_rollout(&self, thread_id: &ThreadId) -> Result<Vec<ResponseItem>, StateError> {
        Ok(self.load_history(thread_id)?.items)
    }

    /// The thread's history to send and its number of compactions.
    pub fn load_history(&self, thread_id: &ThreadId) -> Result<LoadedHistory, StateError> {
        let thread = thread_id.to_string();
        self.read(|conn| {
            let (compactions, last): (i64, Option<i64>) = conn.query_row(
                "SELECT COUNT(*), MAX(seq) FROM rollout_items
                 WHERE thread_id = ?1 AND item_json LIKE ?2",
                params![thread, format!("{COMPACTED_PREFIX}%")],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut stmt = conn.prepare_cached(
                "SELECT item_json FROM rollout_items WHERE thread_id = ?1 AND seq >= ?2 ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![thread, last.unwrap_or(0)])?;
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                let json: String = row.get(0)?;
                if json.starts_with(COMPACTED_PREFIX) {
                    let record: CompactedHistory = serde_json::from_str(&json)
                        .map_err(|e| corrupt("rollout_items", "item_json", &json, e))?;
                    items = record.replacement_history;
                } else {
                    items.push(
                        serde_json::from_str(&json)
                            .map_err(|e| corrupt("rollout_items", "item_json", &json, e))?,
                    );
                }
            }
            Ok(LoadedHistory {
                items,
                compactions: u64::try_from(compactions).unwrap_or(0),
            })
        })
    }

    /// Everything the thread's rollout holds, in order and with the turn of each row: the
    /// transcript a front-end shows, unlike [`Store::load_history`] which is what the model is
    /// sent (compactions do not hide earlier rows here).
    pub fn load_transcript(
        &self,
        thread_id: &ThreadId,
    ) -> Result<Vec<TranscriptEntry>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT turn_id, item_json FROM rollout_items WHERE thread_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query(params![thread_id.to_string()])?;
            collect(rows, |row| {
                let turn_id: Option<String> = row.get(0)?;
                let json: String = row.get(1)?;
                let item = if json.starts_with(COMPACTED_PREFIX) {
                    TranscriptItem::Compaction(
                        serde_json::from_str(&json)
                            .map_err(|e| corrupt("rollout_items", "item_json", &json, e))?,
                    )
                } else {
                    TranscriptItem::Item(
                        serde_json::from_str(&json)
                            .map_err(|e| corrupt("rollout_items", "item_json", &json, e))?,
                    )
                };
                Ok(TranscriptEntry { turn_id, item })
            })
        })
    }

    /// The thread's compaction records, oldest first.
    pub fn list_compactions(
        &self,
        thread_id: &ThreadId,
    ) -> Result<Vec<CompactedHistory>, StateError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT item_json FROM rollout_items WHERE thread_id = ?1 AND item_json LIKE ?2
                 ORDER BY seq",
            )?;
            let rows = stmt.query(params![
                thread_id.to_string(),
                format!("{COMPACTED_PREFIX}%")
            ])?;
            collect(rows, |row| {
                let json: String = row.get(0)?;
                serde_json::from_str(&json)
                    .map_err(|e| corrupt("rollout_items", "item_json", &json, e))
            })
        })
    }

    /// Number of rollout items stored for the thread.
    pub fn rollout_len(&self, thread_id: &ThreadId) -> Result<i64, StateError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM rollout_items WHERE thread_id = ?1",
                params![thread_id.to_string()],
                |r| r.get(0),
            )?)
        })
    }
}

/// Rollout items as stored (JSON text).
pub(crate) fn encode_items(items: &[ResponseItem]) -> Result<Vec<String>, StateError> {
    items
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StateError::Encode {
            what: "rollout item",
            source,
        })
}

/// A compaction record as stored (JSON text).
pub(crate) fn encode_compaction(compaction: &CompactedHistory) -> Result<String, StateError> {
    serde_json::to_string(compaction).map_err(|source| StateError::Encode {
        what: "compaction record",
        source,
    })
}

/// A turn's usage as stored (JSON text).
pub(crate) fn encode_usage(usage: Option<&TokenUsage>) -> Result<Option<String>, StateError> {
    usage
        .map(serde_json::to_string)
        .transpose()
        .map_err(|source| StateError::Encode {
            what: "turn usage",
            source,
        })
}

/// What the writes of one transaction learned about their threads, so that a batch of them
/// runs fewer statements: where each thread's rollout ends (read once), and the latest time
/// each thread was touched (written once, by [`TxThreads::touch_all`], before the commit).
#[derive(Default)]
pub(crate) struct TxThreads {
    /// Thread id and the `seq` of its last rollout item.
    rollout_end: Vec<(String, i64)>,
    /// Thread id and the latest `updated_at_ms` asked for.
    touched: Vec<(String, i64)>,
}

impl TxThreads {
    fn touch(&mut self, thread: &str, at_ms: i64) {
        match self.touched.iter_mut().find(|(id, _)| id == thread) {
            Some((_, latest)) => *latest = (*latest).max(at_ms),
            None => self.touched.push((thread.to_string(), at_ms)),
        }
    }

    /// Writes the touched threads' `updated_at_ms` (never moving it back).
    pub(crate) fn touch_all(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), StateError> {
        for (thread, at_ms) in &self.touched {
            tx.prepare_cached(
                "UPDATE threads SET updated_at_ms = MAX(updated_at_ms, ?2) WHERE id = ?1",
            )?
            .execute(params![thread, at_ms])?;
        }
        Ok(())
    }
}

pub(crate) fn begin_turn_tx(
    tx: &rusqlite::Transaction<'_>,
    thread_id: &ThreadId,
    turn_id: &TurnId,
    trigger: TurnTrigger,
    now: i64,
) -> Result<i64, StateError> {
    let mut threads = TxThreads::default();
    let seq = begin_turn_in(tx, &mut threads, thread_id, turn_id, trigger, now)?;
    threads.touch_all(tx)?;
    Ok(seq)
}

/// [`begin_turn_tx`] within a batch: the thread is touched with the batch.
pub(crate) fn begin_turn_in(
    tx: &rusqlite::Transaction<'_>,
    threads: &mut TxThreads,
    thread_id: &ThreadId,
    turn_id: &TurnId,
    trigger: TurnTrigger,
    now: i64,
) -> Result<i64, StateError> {
    let thread = thread_id.to_string();
    let seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE thread_id = ?1")?
        .query_row(params![thread], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT INTO turns (id, thread_id, seq, turn_trigger, status, started_at_ms)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
    )?
    .execute(params![
        turn_id.to_string(),
        thread,
        seq,
        trigger.as_str(),
        now
    ])?;
    threads.touch(&thread, now);
    Ok(seq)
}

pub(crate) fn append_rollout_tx(
    tx: &rusqlite::Transaction<'_>,
    thread_id: &ThreadId,
    turn_id: Option<&TurnId>,
    encoded: &[String],
    now: i64,
) -> Result<i64, StateError> {
    let mut threads = TxThreads::default();
    let seq = append_rollout_in(tx, &mut threads, thread_id, turn_id, encoded, now)?;
    threads.touch_all(tx)?;
    Ok(seq)
}

/// [`append_rollout_tx`] within a batch: the thread's existence and the end of its rollout are
/// read by its first append only, and the thread is touched with the batch.
pub(crate) fn append_rollout_in(
    tx: &rusqlite::Transaction<'_>,
    threads: &mut TxThreads,
    thread_id: &ThreadId,
    turn_id: Option<&TurnId>,
    encoded: &[String],
    now: i64,
) -> Result<i64, StateError> {
    let thread = thread_id.to_string();
    let turn = turn_id.map(ToString::to_string);
    let index = match threads.rollout_end.iter().position(|(id, _)| *id == thread) {
        Some(index) => index,
        None => {
            let exists: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM threads WHERE id = ?1")?
                .query_row(params![thread], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StateError::NotFound {
                    what: "thread",
                    id: thread,
                });
            }
            let end: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) FROM rollout_items WHERE thread_id = ?1",
                )?
                .query_row(params![thread], |r| r.get(0))?;
            threads.rollout_end.push((thread.clone(), end));
            threads.rollout_end.len() - 1
        }
    };
    let mut seq = threads.rollout_end[index].1;
    let mut insert = tx.prepare_cached(
        "INSERT INTO rollout_items (thread_id, seq, turn_id, item_json) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for json in encoded {
        seq += 1;
        insert.execute(params![thread, seq, turn, json])?;
    }
    threads.rollout_end[index].1 = seq;
    threads.touch(&thread, now);
    Ok(seq)
}

pub(crate) fn finish_turn_tx(
    tx: &rusqlite::Transaction<'_>,
    turn_id: &TurnId,
    status: TurnStatus,
    usage_json: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<(), StateError> {
    let mut threads = TxThreads::default();
    finish_turn_in(tx, &mut threads, turn_id, status, usage_json, error, now)?;
    threads.touch_all(tx)
}

/// [`finish_turn_tx`] within a batch: the thread is touched with the batch.
pub(crate) fn finish_turn_in(
    tx: &rusqlite::Transaction<'_>,
    threads: &mut TxThreads,
    turn_id: &TurnId,
    status: TurnStatus,
    usage_json: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<(), StateError> {
    let thread: Option<String> = tx
        .prepare_cached(
            "UPDATE turns SET status = ?2, usage_json = ?3, error = ?4, ended_at_ms = ?5
             WHERE id = ?1 RETURNING thread_id",
        )?
        .query_row(
            params![turn_id.to_string(), status.as_str(), usage_json, error, now],
            |r| r.get(0),
        )
        .optional()?;
    let Some(thread) = thread else {
        return Err(StateError::NotFound {
            what: "turn",
            id: turn_id.to_string(),
        });
    };
    threads.touch(&thread, now);
    Ok(())
}
