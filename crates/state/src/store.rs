//! Opening the database, connection settings, migrations and transaction helpers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::StateError;

/// File name of the database inside the Quest home.
pub const STATE_DB_FILE_NAME: &str = "state.sqlite";

/// Migrations in order; migration `i` (0-based) brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another process's write lock before failing with
/// `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Current wall-clock time in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A handle to the state database. Cheap to clone; clones share one connection, so calls from
/// several threads of one process serialize on it, and calls from several processes serialize
/// on SQLite's write lock.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StateError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        restrict_db_files(&path).map_err(|source| StateError::Permissions {
            path: path.clone(),
            source,
        })?;
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Switching to WAL needs a moment of exclusive access, and SQLite answers BUSY at once
        // (without the busy handler) while another process opens the same new file: retry.
        retry_busy(|| {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        })
        .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrate(&mut conn)?;
        // Every statement a turn runs stays prepared (rusqlite keeps 16 by default).
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Opens `$quest_home/state.sqlite`, creating the directory (mode 0700) if needed; an
    /// existing home open to group or others is narrowed to 0700.
    pub fn open_in(quest_home: impl AsRef<Path>) -> Result<Store, StateError> {
        let home = quest_home.as_ref();
        create_private_dir(home).map_err(|source| StateError::CreateDir {
            path: home.to_path_buf(),
            source,
        })?;
        Store::open(home.join(STATE_DB_FILE_NAME))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `PRAGMA user_version` of the open database.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.read(|conn| Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?))
    }

    /// Runs `PRAGMA integrity_check`; returns `"ok"` for a healthy database, otherwise SQLite's
    /// description of the damage.
    pub fn integrity_check(&self) -> Result<String, StateError> {
        self.read(|conn| {
            Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))?)
        })
    }

    /// Runs `f` with the connection (reads; a single statement is its own transaction).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        check_call("read");
        let conn = self.inner.conn.lock().map_err(|_| StateError::Poisoned)?;
        f(&conn)
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction and commits it; any error rolls back.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        check_call("write");
        let mut conn = self.inner.conn.lock().map_err(|_| StateError::Poisoned)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(value)
    }
}

static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Write transactions committed by this process so far, through every [`Store`] (each is one
/// fsync of the write-ahead log with `synchronous = FULL`). Tests use it to count a turn's
/// commits.
pub fn committed_transactions() -> u64 {
    COMMITS.load(std::sync::atomic::Ordering::Relaxed)
}

static CALL_CHECK: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

/// Installs a function that runs on the calling thread before every database call of this
/// process, with `"read"` or `"write"`. Tests use it to prove that store calls never run on an
/// async runtime's worker threads; it may panic to fail the call's caller. The first installed
/// function stays; later calls return false.
pub fn set_call_check(check: fn(&'static str)) -> bool {
    CALL_CHECK.set(check).is_ok()
}

fn check_call(what: &'static str) {
    if let Some(check) = CALL_CHECK.get() {
        check(what);
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or narrows an existing one to 0700 when
/// group or others have any access to it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Makes the database and its `-wal`/`-shm` companions readable by their owner only: creates
/// the database file 0600 before SQLite does (SQLite gives the WAL and SHM files the database's
/// mode), and narrows files left more open by older versions.
fn restrict_db_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Err(err) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        && err.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(err);
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                let mode = meta.permissions().mode() & 0o600;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Runs `op` until it stops failing with BUSY/LOCKED or [`BUSY_TIMEOUT`] passes.
fn retry_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(err, _))
                if matches!(
                    err.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StateError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let applied = usize::try_from(found.max(0)).unwrap_or(usize::MAX);
    for sql in MIGRATIONS.iter().skip(applied) {
        tx.execute_batch(sql)?;
    }
    if found != SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_is_durable_and_shared_safely() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        store
            .read(|conn| {
                let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
                let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
                let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                let busy: i64 = conn.pragma_query_value(None, "busy_timeout", |r| r.get(0))?;
                assert_eq!((sync, fk, mode.as_str()), (2, 1, "wal"));
                assert!(busy >= 1000);
                Ok(())
            })
            .unwrap();
        fn assert_clone_send_sync<T: Clone + Send + Sync>() {}
        assert_clone_send_sync::<Store>();
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let result: Result<(), StateError> = store.write(|tx| {
            tx.execute(
                "INSERT INTO threads (id, cwd, model, model_provider, created_at_ms, updated_at_ms)
                 VALUES ('x', '/', 'm', 'p', 0, 0)",
                [],
            )?;
            Err(StateError::Poisoned)
        });
        assert!(result.is_err());
        let count: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM threads", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 0);
    }
}
