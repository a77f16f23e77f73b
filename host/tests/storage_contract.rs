//! The `Storage` contract (`checkpoint_testkit::storage_contract`), checked the same way against
//! every backend: one test per check, each on a fresh store (its own temp dir; on a server,
//! its own key prefix or schema). Server backends skip only with CKPT_SKIP_SERVER_TESTS=1.

use checkpoint_host::storage::{
    MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage, Storage,
};
use checkpoint_testkit::servers::{self, ServerKind};
use checkpoint_testkit::storage_contract_tests;

fn memory() -> Option<(Box<dyn Storage>, ())> {
    Some((Box::new(MemoryStorage::new()), ()))
}

fn sqlite() -> Option<(Box<dyn Storage>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = SqliteStorage::open(dir.path().join("store.db")).expect("open sqlite");
    Some((Box::new(storage), dir))
}

/// A fresh, empty store on the shared Redis server: a key prefix of its own.
fn redis() -> Option<(Box<dyn Storage>, ())> {
    let kind = ServerKind::Redis;
    let url = servers::shared_server_url(kind, "storage contract")?;
    let storage =
        RedisStorage::open(&servers::fresh_store_url(kind, &url, "contract")).expect("open redis");
    Some((Box::new(storage), ()))
}

/// A fresh, empty store on the shared PostgreSQL server: a schema of its own.
fn postgres() -> Option<(Box<dyn Storage>, ())> {
    let kind = ServerKind::Postgres;
    let url = servers::shared_server_url(kind, "storage contract")?;
    let storage = PostgresStorage::open(&servers::fresh_store_url(kind, &url, "contract"))
        .expect("open postgres");
    Some((Box::new(storage), ()))
}

storage_contract_tests!(memory_backend, memory());
storage_contract_tests!(sqlite_backend, sqlite());
storage_contract_tests!(redis_backend, redis());
storage_contract_tests!(postgres_backend, postgres());
