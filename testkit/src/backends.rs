//! Every native store by name, as the Rust conformance runner plays cases on them: `memory`,
//! `sqlite` (a database in a temporary directory), `freezing` (the [`FreezingStorage`] of the
//! crash tests, which a crash reboots to its durable state), and `postgres` and `redis` (a fresh
//! store of its own on the shared test server).

use std::cell::RefCell;
use std::rc::Rc;

use checkpoint_host::storage::{MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage};
use checkpoint_host::{CommitOutcome, Lookup, Storage, Write, WriteOp};
use tempfile::TempDir;

use crate::faults::FreezingStorage;
use crate::servers::{self, ServerKind};

/// One store, empty when made: fresh connections to it, and what a crash does to it.
pub struct Backend {
    open: Box<dyn Fn() -> Box<dyn Storage>>,
    reboot: Box<dyn Fn()>,
    _dir: Option<TempDir>,
}

fn shared<S: Storage + Clone + 'static>(store: S) -> Backend {
    Backend {
        open: Box::new(move || Box::new(store.clone())),
        reboot: Box::new(|| {}),
        _dir: None,
    }
}

fn server_url(kind: ServerKind, what: &str) -> String {
    let url = servers::shared_server_url(kind, what).expect("the server runs (see `names`)");
    servers::fresh_store_url(kind, &url, what)
}

impl Backend {
    /// A new, empty store of backend `name` (one of [`names`]); `what` names the test in server
    /// store names. Panics when it cannot be opened.
    pub fn new(name: &str, what: &str) -> Backend {
        match name {
            "memory" => shared(MemoryStorage::new()),
            "sqlite" => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join(format!("{what}.db"));
                Backend {
                    open: Box::new(move || Box::new(SqliteStorage::open(&path).expect("sqlite"))),
                    reboot: Box::new(|| {}),
                    _dir: Some(dir),
                }
            }
            "freezing" => {
                let current = Rc::new(RefCell::new(FreezingStorage::new()));
                let rebooted = Rc::clone(&current);
                Backend {
                    open: Box::new(move || Box::new(current.borrow().clone())),
                    reboot: Box::new(move || {
                        let next = rebooted.borrow().reboot();
                        *rebooted.borrow_mut() = next;
                    }),
                    _dir: None,
                }
            }
            "postgres" => shared(
                PostgresStorage::open(&server_url(ServerKind::Postgres, what)).expect("postgres"),
            ),
            "redis" => {
                shared(RedisStorage::open(&server_url(ServerKind::Redis, what)).expect("redis"))
            }
            other => panic!("unknown backend {other}"),
        }
    }

    /// A new connection to the store.
    pub fn connect(&self) -> Box<dyn Storage> {
        (self.open)()
    }

    /// Commits one unconditional write through a new connection, behind any checkpointer's
    /// back (`put-raw`, `delete-raw`, `corrupt` steps).
    pub fn write_raw(&self, key: &str, op: WriteOp) -> Result<(), String> {
        let write = Write {
            key: key.into(),
            expected_version: None,
            op,
        };
        match self.connect().commit(vec![write]) {
            Ok(CommitOutcome::Committed(_)) => Ok(()),
            other => Err(format!(
                "writing {key} behind the component's back: {other:?}"
            )),
        }
    }

    /// The bytes stored under `key`, read through a new connection.
    pub fn read_raw(&self, key: &str) -> Result<Vec<u8>, String> {
        match self.connect().get(key) {
            Ok(Lookup::Found(entry)) => Ok(entry.value),
            other => Err(format!("{key} holds nothing: {other:?}")),
        }
    }

    /// Every key in the store, in ascending byte order, read through a new connection.
    pub fn keys(&self) -> Result<Vec<String>, String> {
        self.connect()
            .list_keys("")
            .map_err(|e| format!("listing keys: {e:?}"))
    }

    /// What a crash does to the store itself: the freezing store keeps only what was durable
    /// and kills older connections; every other store already keeps exactly what was committed.
    pub fn reboot(&self) {
        (self.reboot)();
    }
}

/// The backends to play on: memory, SQLite and the freezing store, and the server stores when
/// their shared servers run (`make test` starts them; only `CKPT_SKIP_SERVER_TESTS=1` leaves
/// them out, loudly; otherwise a missing server fails).
pub fn names(what: &str) -> Vec<&'static str> {
    let mut names = vec!["memory", "sqlite", "freezing"];
    for kind in ServerKind::ALL {
        if servers::shared_server_url(kind, what).is_some() {
            names.push(kind.name());
        }
    }
    names
}
