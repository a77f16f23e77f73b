//! What is particular to the Redis store: refusing unreachable and non-durable servers, errors
//! during an outage and recovery after it (data kept by the AOF), a commit whose connection
//! times out (outcome unknown), foreign data under a prefix, and the script reload.
//!
//! The storage contract, the conformance suite and the concurrency tests run on Redis too
//! (`storage_contract.rs`, `conformance.rs`, `concurrency.rs`). Tests that stop or reconfigure a
//! server start a private one; the others use the shared server of `scripts/with-test-servers.sh`.

use checkpoint_host::storage::{OpenErrorKind, RedisStorage, open_storage};
use checkpoint_host::{CommitOutcome, Entry, Lookup, Storage, StorageError, Write, WriteOp};

use checkpoint_testkit::servers as common;

use common::{PrivateServer, ServerKind};

fn put(key: &str, expected: Option<u64>, value: &[u8]) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Put(value.to_vec()),
    }
}

fn committed(s: &mut dyn Storage, writes: Vec<Write>) -> Vec<u64> {
    match s.commit(writes).expect("commit succeeds") {
        CommitOutcome::Committed(versions) => versions,
        CommitOutcome::Conflict(i) => panic!("unexpected conflict at {i}"),
    }
}

/// `url` with `extra` query parameters (`a=b&c=d`) appended.
fn with(url: &str, extra: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

/// A key prefix no other test or run uses.
fn fresh_prefix(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// A plain client connection, to play the operator (CONFIG, ACL, CLIENT PAUSE, raw keys).
fn admin(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("admin connection")
}

fn run(conn: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(conn)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// `host:port` of a `redis://host:port/` URL.
fn host_port(url: &str) -> &str {
    url.trim_start_matches("redis://").trim_end_matches('/')
}

#[test]
fn unreachable_server_is_refused_at_once_naming_it_without_the_password() {
    // A port that nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://ckpt:s3cret-pw@127.0.0.1:{port}/?connect_timeout_ms=2000");
    let err = RedisStorage::open(&url).expect_err("nothing listens there");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "names the server: {text}"
    );
    assert!(text.contains("unavailable"), "says what is wrong: {text}");
    assert!(!text.contains("s3cret-pw"), "shows the password: {text}");
    // The same through the URL front door, marked as an outage (the CLI exits 9 for it).
    let err = open_storage(&url).err().expect("nothing listens there");
    assert!(!format!("{err:#}").contains("s3cret-pw"));
    assert_eq!(
        err.kind(),
        OpenErrorKind::Unreachable,
        "an unreachable server is an outage: {err:#}"
    );
}

#[test]
fn tls_urls_and_unknown_parameters_are_refused_clearly() {
    let err = open_storage("rediss://u:s3cret-pw@127.0.0.1:1/")
        .err()
        .expect("no TLS in this build");
    let text = format!("{err:#}");
    assert!(text.contains("TLS"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
    let err = RedisStorage::open("redis://127.0.0.1:1/?prefixx=a").expect_err("typo");
    assert!(format!("{err:#}").contains("prefixx"), "{err:#}");
}

#[test]
fn calls_fail_with_storage_errors_during_an_outage_and_work_again_after_it() {
    let Some(server) = PrivateServer::start(ServerKind::Redis, "redis outage") else {
        return;
    };
    let url = with(&server.url, "connect_timeout_ms=500&prefix=outage");
    let mut store = RedisStorage::open(&url).expect("open redis");
    let v1 = committed(&mut store, vec![put("stage/latest", Some(0), b"one")])[0];

    server.stop();
    let where_ = host_port(&server.url);
    match store.get("stage/latest") {
        Err(StorageError::Unavailable(m)) => assert!(m.contains(where_), "{m}"),
        other => panic!("get during the outage: {other:?}"),
    }
    match store.commit(vec![put("stage/latest", Some(v1), b"two")]) {
        // Nothing could be sent: the commit was certainly not applied.
        Err(StorageError::Unavailable(m)) => assert!(m.contains(where_), "{m}"),
        other => panic!("commit during the outage: {other:?}"),
    }
    assert!(
        matches!(store.list_keys(""), Err(StorageError::Unavailable(_))),
        "list-keys during the outage"
    );

    server.restart();
    // The AOF kept the acknowledged commit; the refused one left no trace.
    assert_eq!(
        store.get("stage/latest").expect("get after the restart"),
        Lookup::Found(Entry {
            value: b"one".to_vec(),
            version: v1
        })
    );
    // A restarted server has no scripts: the store loads its commit script again.
    let v2 = committed(&mut store, vec![put("stage/latest", Some(v1), b"two")])[0];
    assert!(
        v2 > v1,
        "versions keep growing across a restart: {v1} then {v2}"
    );
    assert_eq!(
        store.list_keys("").expect("list after the restart"),
        ["stage/latest"]
    );
}

#[test]
fn a_server_that_does_not_fsync_every_write_is_refused_unless_durability_is_relaxed() {
    let Some(server) = PrivateServer::start(ServerKind::Redis, "redis durability check") else {
        return;
    };
    let mut operator = admin(&server.url);
    // The private server is strict (scripts/redis-server.sh): it opens.
    RedisStorage::open(&server.url).expect("appendfsync always opens");

    run(&mut operator, &["CONFIG", "SET", "appendfsync", "everysec"]);
    let err = RedisStorage::open(&server.url).expect_err("everysec is refused");
    let text = format!("{err:#}");
    for says in [
        "appendfsync",
        "everysec",
        "appendfsync always",
        "durability=relaxed",
    ] {
        assert!(text.contains(says), "missing {says:?}: {text}");
    }
    let url = with(&server.url, "durability=relaxed");
    let mut relaxed = RedisStorage::open(&url).expect("relaxed opens");
    committed(&mut relaxed, vec![put("k", Some(0), b"v")]);

    run(&mut operator, &["CONFIG", "SET", "appendonly", "no"]);
    let err = RedisStorage::open(&server.url).expect_err("no AOF is refused");
    assert!(format!("{err:#}").contains("appendonly"), "{err:#}");

    run(&mut operator, &["CONFIG", "SET", "appendonly", "yes"]);
    run(&mut operator, &["CONFIG", "SET", "appendfsync", "always"]);
    run(
        &mut operator,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    );
    let err = RedisStorage::open(&server.url).expect_err("evicting keys is refused");
    assert!(format!("{err:#}").contains("allkeys-lru"), "{err:#}");
}

#[test]
fn a_server_without_config_access_needs_durability_relaxed() {
    let Some(server) = PrivateServer::start(ServerKind::Redis, "redis without CONFIG") else {
        return;
    };
    // As on managed services: this user may do everything but CONFIG.
    run(
        &mut admin(&server.url),
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">app-s3cret",
            "~*",
            "&*",
            "+@all",
            "-config",
        ],
    );
    let url = server
        .url
        .replacen("redis://", "redis://app:app-s3cret@", 1);
    let err = RedisStorage::open(&url).expect_err("settings cannot be read");
    let text = format!("{err:#}");
    assert!(text.contains("CONFIG"), "{text}");
    assert!(text.contains("durability=relaxed"), "{text}");
    assert!(!text.contains("app-s3cret"), "{text}");
    let mut store = RedisStorage::open(&with(&url, "durability=relaxed")).expect("relaxed opens");
    committed(&mut store, vec![put("k", Some(0), b"v")]);

    let wrong = server
        .url
        .replacen("redis://", "redis://app:wrong-s3cret@", 1);
    let err = RedisStorage::open(&with(&wrong, "durability=relaxed")).expect_err("wrong password");
    let text = format!("{err:#}");
    assert!(text.contains("refused the connection"), "{text}");
    assert!(!text.contains("wrong-s3cret"), "{text}");
}

#[test]
fn a_commit_whose_reply_does_not_come_in_time_is_a_timeout_and_the_store_recovers() {
    let Some(server) = PrivateServer::start(ServerKind::Redis, "redis commit timeout") else {
        return;
    };
    let mut operator = admin(&server.url);
    let url = with(&server.url, "io_timeout_ms=300&prefix=paused");
    let mut store = RedisStorage::open(&url).expect("open redis");
    let v1 = committed(&mut store, vec![put("k", Some(0), b"one")])[0];

    // Writes (the commit script among them) wait; reads go on.
    run(&mut operator, &["CLIENT", "PAUSE", "600000", "WRITE"]);
    match store.commit(vec![put("k", Some(v1), b"two")]) {
        Err(StorageError::Timeout(m)) => assert!(m.contains("may or may not"), "{m}"),
        other => panic!("commit while writes are paused: {other:?}"),
    }
    let during = store.get("k").expect("reads go on while writes are paused");
    run(&mut operator, &["CLIENT", "UNPAUSE"]);

    // The outcome was unknown; whichever it was, the store answers again and holds one of the
    // two values, never anything else.
    let after = store.get("k").expect("get after the pause");
    match &after {
        Lookup::Found(e) if e.value == b"one" => assert_eq!(e.version, v1),
        Lookup::Found(e) if e.value == b"two" => assert!(e.version > v1),
        other => panic!("after an unknown outcome: {other:?}"),
    }
    assert!(matches!(during, Lookup::Found(_)));
    let version = match after {
        Lookup::Found(e) => e.version,
        Lookup::Missing => unreachable!("matched above"),
    };
    committed(&mut store, vec![put("k", Some(version), b"three")]);
}

#[test]
fn foreign_data_under_the_prefix_fails_the_commit_and_nothing_is_applied() {
    let Some(url) = common::shared_server_url(ServerKind::Redis, "redis foreign data") else {
        return;
    };
    let prefix = fresh_prefix("foreign");
    let mut store = RedisStorage::open(&with(&url, &format!("prefix={prefix}"))).expect("open");
    // Someone else wrote a plain string where the entry of "b" would be.
    run(
        &mut admin(&url),
        &["SET", &format!("{{{prefix}}}:e:b"), "not a hash"],
    );
    match store.commit(vec![put("a", None, b"1"), put("b", None, b"2")]) {
        Err(StorageError::Failed(m)) => assert!(m.contains("CKPTDAMAGED"), "{m}"),
        other => panic!("commit over foreign data: {other:?}"),
    }
    assert_eq!(store.get("a").expect("get"), Lookup::Missing);
    assert!(store.list_keys("").expect("list").is_empty());
}

#[test]
fn stores_with_distinct_prefixes_are_independent() {
    let Some(url) = common::shared_server_url(ServerKind::Redis, "redis prefixes") else {
        return;
    };
    let open = |p: &str| RedisStorage::open(&with(&url, &format!("prefix={p}"))).expect("open");
    let (p1, p2) = (fresh_prefix("left"), fresh_prefix("right"));
    let (mut left, mut right) = (open(&p1), open(&p2));
    committed(&mut left, vec![put("k", Some(0), b"left")]);
    // Absent in the other store, whatever the first one holds.
    committed(&mut right, vec![put("k", Some(0), b"right")]);
    committed(&mut right, vec![put("only-right", Some(0), b"r")]);
    assert_eq!(left.list_keys("").expect("list"), ["k"]);
    assert_eq!(right.list_keys("").expect("list"), ["k", "only-right"]);
    match left.get("k").expect("get") {
        Lookup::Found(e) => assert_eq!(e.value, b"left"),
        Lookup::Missing => panic!("left lost its key"),
    }
}

#[test]
fn a_store_written_by_a_newer_schema_is_refused() {
    let Some(url) = common::shared_server_url(ServerKind::Redis, "redis schema") else {
        return;
    };
    let prefix = fresh_prefix("schema");
    run(
        &mut admin(&url),
        &["SET", &format!("{{{prefix}}}:schema"), "2"],
    );
    let err = RedisStorage::open(&with(&url, &format!("prefix={prefix}")))
        .expect_err("schema 2 is newer than this build");
    assert!(format!("{err:#}").contains("newer"), "{err:#}");
}

#[test]
fn a_flushed_script_cache_is_refilled_by_the_next_commit() {
    let Some(url) = common::shared_server_url(ServerKind::Redis, "redis script reload") else {
        return;
    };
    let mut store = RedisStorage::open(&with(&url, &format!("prefix={}", fresh_prefix("reload"))))
        .expect("open");
    let v1 = committed(&mut store, vec![put("k", Some(0), b"one")])[0];
    // Other stores on this server may be committing: they reload the script the same way.
    run(&mut admin(&url), &["SCRIPT", "FLUSH"]);
    let v2 = committed(&mut store, vec![put("k", Some(v1), b"two")])[0];
    assert!(v2 > v1);
}
