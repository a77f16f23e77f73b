//! What the PostgreSQL backend promises beyond the shared contract: a clear, quick `unavailable`
//! when the server is unreachable, storage errors during an outage and recovery after it,
//! schema creation that concurrent opens cannot race, refusal of a newer schema, the
//! statement timeout, conditions decided on the newest committed row (READ COMMITTED), and
//! `timeout` (outcome unknown) when the connection breaks while `COMMIT` is in flight (a proxy
//! cuts it just before or just after the server commits).
//!
//! Tests on the shared server use a fresh schema each; the outage tests start a server of
//! their own (`common::PrivateServer`). `CKPT_SKIP_SERVER_TESTS=1` skips those, loudly.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use checkpoint_host::storage::{OpenErrorKind, PostgresStorage, Storage, open_storage};
use checkpoint_host::{CommitOutcome, Lookup, StorageError, Write, WriteOp};
use postgres::{Client, NoTls};

use checkpoint_testkit::servers as common;

use common::{PrivateServer, ServerKind};

fn put(key: &str, expected: Option<u64>, value: &[u8]) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Put(value.to_vec()),
    }
}

fn del(key: &str, expected: Option<u64>) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Delete,
    }
}

fn committed(s: &mut dyn Storage, writes: Vec<Write>) -> Vec<u64> {
    match s.commit(writes).expect("commit succeeds") {
        CommitOutcome::Committed(versions) => versions,
        CommitOutcome::Conflict(i) => panic!("unexpected conflict at {i}"),
    }
}

fn version(s: &mut dyn Storage, key: &str) -> u64 {
    match s.get(key).expect("get succeeds") {
        Lookup::Found(entry) => entry.version,
        Lookup::Missing => 0,
    }
}

/// A schema name unique to this process, time and call.
fn fresh_schema(what: &str) -> String {
    static SCHEMAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}_{}_{nanos}_{n}", std::process::id())
}

fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// The shared server's URL with a fresh schema, and that schema's name.
fn fresh_store_url(what: &str) -> Option<(String, String)> {
    let url = common::shared_server_url(ServerKind::Postgres, what)?;
    let schema = fresh_schema("pgtest");
    Some((with_params(&url, &format!("schema={schema}")), schema))
}

/// A plain client on the shared server, for what the store never does (locks, DDL).
fn raw_client(what: &str) -> Option<Client> {
    let url = common::shared_server_url(ServerKind::Postgres, what)?;
    Some(Client::connect(&url, NoTls).expect("raw connection to the shared server"))
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}

#[test]
fn unreachable_server_fails_open_with_host_and_port_but_no_password() {
    let port = closed_port();
    let url =
        format!("postgres://ckpt:hunter2-secret@127.0.0.1:{port}/ckpt?connect_timeout_ms=2000");
    let started = Instant::now();
    let err = PostgresStorage::open(&url).expect_err("nothing listens there");
    let elapsed = started.elapsed();
    let message = format!("{err:#}");
    println!("open on a closed port failed after {elapsed:?}: {message}");
    assert!(
        message.contains(&format!("127.0.0.1:{port}")),
        "the message names host and port: {message}"
    );
    assert!(
        message.contains("cannot connect"),
        "the message says what failed: {message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the message leaks the password: {message}"
    );
    assert_eq!(
        err.kind(),
        OpenErrorKind::Unreachable,
        "an outage: {message}"
    );
    // The generic entry point (the CLI's) gives the same answer.
    let err = open_storage(&url)
        .map(|_| ())
        .expect_err("nothing listens there");
    assert!(format!("{err:#}").contains(&format!("127.0.0.1:{port}")));
    assert_eq!(err.kind(), OpenErrorKind::Unreachable);
}

#[test]
fn bad_urls_are_refused_before_connecting() {
    let port = closed_port();
    let base = format!("postgres://ckpt:hunter2-secret@127.0.0.1:{port}/ckpt");
    for (params, expected) in [
        ("schema=Has-Caps", "not a schema name"),
        ("schema=", "not a schema name"),
        ("schema=pg_catalog", "reserved"),
        ("schema=a;drop", "not a schema name"),
        ("pool_size=0", "positive whole number"),
        ("pool_size=1000", "at most 64"),
        ("connect_timeout_ms=soon", "positive whole number"),
        ("statement_timeout_ms=-1", "positive whole number"),
        ("no_such_option=1", "invalid"),
    ] {
        let err = PostgresStorage::open(&format!("{base}?{params}")).expect_err(params);
        let message = format!("{err:#}");
        assert!(
            message.contains(expected),
            "{params}: expected {expected:?} in {message}"
        );
        assert!(
            !message.contains("hunter2"),
            "{params}: the message leaks the password: {message}"
        );
    }
    let err = PostgresStorage::open("mysql://x@127.0.0.1/db").expect_err("wrong scheme");
    assert!(format!("{err:#}").contains("postgres://"));
}

#[test]
fn separate_schemas_are_independent_stores() {
    let Some((url_a, _)) = fresh_store_url("independent schemas") else {
        return;
    };
    let Some((url_b, _)) = fresh_store_url("independent schemas") else {
        return;
    };
    let mut a = PostgresStorage::open(&url_a).expect("open a");
    let mut b = PostgresStorage::open(&url_b).expect("open b");
    committed(&mut a, vec![put("k", Some(0), b"in a")]);
    assert_eq!(b.get("k").expect("get"), Lookup::Missing);
    assert!(b.list_keys("").expect("list").is_empty());
    committed(&mut b, vec![put("k", Some(0), b"in b")]);
    match a.get("k").expect("get") {
        Lookup::Found(entry) => assert_eq!(entry.value, b"in a"),
        Lookup::Missing => panic!("a lost its key"),
    }
}

#[test]
fn clones_share_the_store_and_reopening_keeps_the_data() {
    let Some((url, _)) = fresh_store_url("clones and reopen") else {
        return;
    };
    let mut first = PostgresStorage::open(&url).expect("open");
    let mut clone = first.clone();
    let v = committed(&mut first, vec![put("k", Some(0), b"durable")])[0];
    assert_eq!(version(&mut clone, "k"), v);
    drop((first, clone));
    let mut reopened = PostgresStorage::open(&url).expect("reopen");
    assert_eq!(version(&mut reopened, "k"), v);
    // The version sequence carries on after a reopen: a deleted key's version never returns.
    committed(&mut reopened, vec![del("k", Some(v))]);
    let v2 = committed(&mut reopened, vec![put("k", Some(0), b"again")])[0];
    assert!(v2 > v, "version {v2} after {v}");
}

#[test]
fn concurrent_opens_create_the_schema_once() {
    concurrent_opens("");
}

/// The store sets its own isolation level: a server whose default is SERIALIZABLE (where a
/// snapshot taken before the migration lock was granted would miss the other opener's schema)
/// changes nothing.
#[test]
fn concurrent_opens_create_the_schema_once_under_a_serializable_default() {
    concurrent_opens("options=-c%20default_transaction_isolation%3Dserializable");
}

fn concurrent_opens(params: &str) {
    let Some((url, schema)) = fresh_store_url("concurrent opens") else {
        return;
    };
    let url = if params.is_empty() {
        url
    } else {
        with_params(&url, params)
    };
    let Some(mut raw) = raw_client("concurrent opens") else {
        return;
    };
    let openers = 8;
    let barrier = Arc::new(Barrier::new(openers));
    let handles: Vec<_> = (0..openers)
        .map(|_| {
            let (url, barrier) = (url.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStorage::open(&url)
            })
        })
        .collect();
    let mut stores: Vec<PostgresStorage> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .expect("opener thread")
                .expect("every open succeeds")
        })
        .collect();
    let rows: i64 = raw
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".ckpt_schema"),
            &[],
        )
        .expect("schema table")
        .get(0);
    assert_eq!(rows, 1, "one schema-version row");
    let tables: i64 = raw
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .expect("catalog")
        .get(0);
    assert_eq!(tables, 2, "ckpt_schema and ckpt_entries, once each");
    // They are one store.
    let v = committed(&mut stores[0], vec![put("k", Some(0), b"shared")])[0];
    for store in &mut stores {
        assert_eq!(version(store, "k"), v);
    }
    let v2 = committed(
        &mut stores[1],
        vec![put("k", Some(v), b"again"), del("x", Some(0))],
    )[0];
    assert_eq!(version(&mut stores[2], "k"), v2);
}

#[test]
fn newer_schema_version_is_refused() {
    let Some((url, schema)) = fresh_store_url("newer schema") else {
        return;
    };
    let Some(mut raw) = raw_client("newer schema") else {
        return;
    };
    drop(PostgresStorage::open(&url).expect("create the store"));
    raw.execute(
        &format!("UPDATE \"{schema}\".ckpt_schema SET version = 99"),
        &[],
    )
    .expect("pretend a newer build wrote it");
    let err = PostgresStorage::open(&url).expect_err("a newer schema is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("newer") && message.contains("99") && message.contains(&schema),
        "the message says why: {message}"
    );
}

#[test]
fn statement_timeout_is_a_timeout_and_applies_nothing() {
    let Some((url, schema)) = fresh_store_url("statement timeout") else {
        return;
    };
    let Some(mut raw) = raw_client("statement timeout") else {
        return;
    };
    let mut store =
        PostgresStorage::open(&with_params(&url, "statement_timeout_ms=300")).expect("open");
    let v = committed(&mut store, vec![put("held", Some(0), b"before")])[0];
    // Another session holds the row's lock, so the store's conditional update waits on it
    // until the server cancels the statement.
    let mut holder = raw.transaction().expect("begin");
    holder
        .execute(
            &format!("SELECT 1 FROM \"{schema}\".ckpt_entries WHERE key = $1 FOR UPDATE"),
            &[&b"held".as_slice()],
        )
        .expect("lock the row");
    let result = store.commit(vec![
        put("other", None, b"x"),
        put("held", Some(v), b"after"),
    ]);
    holder.rollback().expect("release the lock");
    match result {
        Err(StorageError::Timeout(message)) => {
            assert!(message.contains("statement_timeout"), "{message}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(version(&mut store, "held"), v, "nothing was applied");
    assert_eq!(store.get("other").expect("get"), Lookup::Missing);
    // The connection that saw the timeout is fine for the next call.
    committed(&mut store, vec![put("held", Some(v), b"after")]);
}

/// Waits (bounded) until a statement on `schema` waits on a lock: then the store's commit is
/// known to be blocked behind the test's open transaction.
fn wait_until_blocked(raw: &mut Client, schema: &str) {
    for _ in 0..500 {
        let waiting: i64 = raw
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
                &[&schema],
            )
            .expect("pg_stat_activity")
            .get(0);
        if waiting > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the store's commit never waited on the held lock");
}

#[test]
fn a_condition_is_decided_on_the_row_a_concurrent_writer_committed() {
    let Some((url, schema)) = fresh_store_url("concurrent writer") else {
        return;
    };
    let Some(mut writer) = raw_client("concurrent writer") else {
        return;
    };
    let Some(mut watcher) = raw_client("concurrent writer") else {
        return;
    };
    let mut store = PostgresStorage::open(&url).expect("open");
    let v = committed(&mut store, vec![put("k", Some(0), b"v1")])[0];
    // A concurrent writer moves the key to a new version but has not committed yet.
    let mut tx = writer.transaction().expect("begin");
    tx.execute(
        &format!(
            "UPDATE \"{schema}\".ckpt_entries
             SET value = 'raced', version = nextval('\"{schema}\".ckpt_versions') WHERE key = $1"
        ),
        &[&b"k".as_slice()],
    )
    .expect("concurrent update");
    // The store's commit expects the version it read; it must wait, then see the new row.
    let mut racing = store.clone();
    let commit = std::thread::spawn(move || racing.commit(vec![put("k", Some(v), b"mine")]));
    wait_until_blocked(&mut watcher, &schema);
    tx.commit().expect("the concurrent writer commits");
    let outcome = commit
        .join()
        .expect("commit thread")
        .expect("commit answers");
    assert_eq!(outcome, CommitOutcome::Conflict(0));
    match store.get("k").expect("get") {
        Lookup::Found(entry) => assert_eq!(entry.value, b"raced"),
        Lookup::Missing => panic!("the key is gone"),
    }
}

#[test]
fn delete_of_an_absent_key_holds_it_until_commit() {
    let Some((url, schema)) = fresh_store_url("absent delete") else {
        return;
    };
    let Some(mut writer) = raw_client("absent delete") else {
        return;
    };
    let Some(mut watcher) = raw_client("absent delete") else {
        return;
    };
    let mut store = PostgresStorage::open(&url).expect("open");
    // A concurrent transaction inserts the key but has not committed: a delete expecting the
    // key absent must wait for it, and then find it present.
    let mut tx = writer.transaction().expect("begin");
    tx.execute(
        &format!(
            "INSERT INTO \"{schema}\".ckpt_entries (key, value, version)
             VALUES ($1, 'theirs', nextval('\"{schema}\".ckpt_versions'))"
        ),
        &[&b"k".as_slice()],
    )
    .expect("concurrent insert");
    let mut racing = store.clone();
    let commit =
        std::thread::spawn(move || racing.commit(vec![put("a", None, b"mine"), del("k", Some(0))]));
    wait_until_blocked(&mut watcher, &schema);
    tx.commit().expect("the concurrent insert commits");
    let outcome = commit
        .join()
        .expect("commit thread")
        .expect("commit answers");
    assert_eq!(outcome, CommitOutcome::Conflict(1));
    assert_eq!(store.get("a").expect("get"), Lookup::Missing);
    assert_ne!(version(&mut store, "k"), 0, "their key stays");
    // With nobody racing, deleting an absent key leaves nothing behind (no placeholder row).
    committed(
        &mut store,
        vec![del("absent", Some(0)), del("absent2", None)],
    );
    assert_eq!(
        store.list_keys("absent").expect("list"),
        Vec::<String>::new()
    );
}

#[test]
fn calls_fail_with_storage_errors_while_the_server_is_down_and_work_after_restart() {
    let Some(server) = PrivateServer::start(ServerKind::Postgres, "server outage") else {
        return;
    };
    let url = with_params(
        &server.url,
        &format!("schema={}&connect_timeout_ms=1000", fresh_schema("outage")),
    );
    let mut store = PostgresStorage::open(&url).expect("open");
    let mut other = store.clone();
    let v = committed(&mut store, vec![put("k", Some(0), b"before")])[0];
    assert_eq!(version(&mut other, "k"), v);

    server.stop();
    let port = server
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next());
    let port = port.expect("a port in the URL");
    match store.get("k") {
        Err(StorageError::Unavailable(message)) => {
            assert!(message.contains(port), "names the server: {message}")
        }
        other => panic!("get during the outage: {other:?}"),
    }
    match store.commit(vec![put("k", Some(v), b"during")]) {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("commit during the outage: {other:?}"),
    }
    assert!(matches!(
        other.list_keys(""),
        Err(StorageError::Unavailable(_))
    ));
    assert!(
        PostgresStorage::open(&url).is_err(),
        "open during the outage"
    );

    server.restart();
    // The write attempted during the outage was not applied; new calls work.
    match store.get("k").expect("get after the restart") {
        Lookup::Found(entry) => {
            assert_eq!(entry.value, b"before");
            assert_eq!(entry.version, v);
        }
        Lookup::Missing => panic!("the committed key is gone"),
    }
    let v2 = committed(&mut other, vec![put("k", Some(v), b"after")])[0];
    assert_eq!(version(&mut store, "k"), v2);
}

#[test]
fn pooled_connections_broken_by_a_restart_are_replaced_without_an_error() {
    let Some(server) = PrivateServer::start(ServerKind::Postgres, "server restart") else {
        return;
    };
    let url = with_params(
        &server.url,
        &format!("schema={}&pool_size=3", fresh_schema("restart")),
    );
    let store = PostgresStorage::open(&url).expect("open");
    // Fill the pool: three callers at once each hold a connection.
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (mut s, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                committed(&mut s, vec![put(&format!("k{i}"), Some(0), b"v")])
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    // Every pooled connection dies with the server; no call is made while it is down.
    server.stop();
    server.restart();
    let mut s = store.clone();
    assert_eq!(
        s.list_keys("k").expect("list after the restart"),
        vec!["k0", "k1", "k2"]
    );
    let v = version(&mut s, "k0");
    committed(&mut s, vec![put("k0", Some(v), b"v2")]);
}

/// What the proxy does with the first `COMMIT` after it is armed.
#[derive(Clone, Copy, PartialEq)]
enum CommitCut {
    /// Forward it, then cut the connection when the server's answer comes: applied.
    AfterTheServerAnswers,
    /// Cut the connection instead of forwarding it: never applied.
    BeforeTheServerSeesIt,
}

/// A TCP proxy to the shared server that cuts the connection around the first simple-query
/// `COMMIT` once `armed` is set, so a test knows exactly where the commit was when the
/// connection broke. Returns the port it listens on.
fn commit_cutting_proxy(
    server: std::net::SocketAddr,
    cut: CommitCut,
    armed: Arc<std::sync::atomic::AtomicBool>,
) -> u16 {
    use std::io::{Read, Write as _};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::Ordering;

    fn read_message(from: &mut TcpStream, typed: bool) -> Option<Vec<u8>> {
        let mut head = vec![0u8; if typed { 5 } else { 4 }];
        from.read_exact(&mut head).ok()?;
        let len_at = head.len() - 4;
        let len = u32::from_be_bytes(head[len_at..].try_into().ok()?) as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        from.read_exact(&mut body).ok()?;
        head.extend(body);
        Some(head)
    }

    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
    let port = listener.local_addr().expect("proxy address").port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut upstream) = TcpStream::connect(server) else {
                return;
            };
            let cutting = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (mut client_out, mut upstream_in) = (
                client.try_clone().expect("clone"),
                upstream.try_clone().expect("clone"),
            );
            let cutting_answers = Arc::clone(&cutting);
            // Server to client: bytes as they come, until a cut is under way.
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = upstream_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if cutting_answers.load(Ordering::SeqCst) {
                        break; // the server answered COMMIT: drop the answer, cut
                    }
                    if client_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client_out.shutdown(Shutdown::Both);
                let _ = upstream_in.shutdown(Shutdown::Both);
            });
            // Client to server: whole messages, so a COMMIT is recognised.
            let armed = Arc::clone(&armed);
            std::thread::spawn(move || {
                let mut typed = false; // the startup message has no type byte
                while let Some(message) = read_message(&mut client, typed) {
                    typed = true;
                    let is_commit = message[0] == b'Q' && message[5..].starts_with(b"COMMIT");
                    if is_commit && armed.swap(false, Ordering::SeqCst) {
                        cutting.store(true, Ordering::SeqCst);
                        if cut == CommitCut::AfterTheServerAnswers {
                            let _ = upstream.write_all(&message);
                            return; // the other thread cuts when the answer arrives
                        }
                        break;
                    }
                    if upstream.write_all(&message).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// Commits one conditional put through a proxy that cuts the connection around `COMMIT`.
/// Returns the commit's answer and the key's version before and after (read directly).
fn connection_cut_during_commit(
    cut: CommitCut,
) -> Option<(Result<CommitOutcome, StorageError>, u64, u64)> {
    let (url, schema) = fresh_store_url("connection cut during commit")?;
    let mut direct = PostgresStorage::open(&url).expect("open directly");
    let v = committed(&mut direct, vec![put("k", Some(0), b"before")])[0];
    let config: postgres::Config = common::shared_server_url(ServerKind::Postgres, "cut")?
        .parse()
        .expect("server URL");
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the shared server is not on TCP: {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let server = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .expect("server address")
        .next()
        .expect("an address");
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = commit_cutting_proxy(server, cut, Arc::clone(&armed));
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("postgres");
    let mut through_proxy = PostgresStorage::open(&format!(
        "postgres://{user}@127.0.0.1:{proxy}/{dbname}?sslmode=disable&schema={schema}"
    ))
    .expect("open through the proxy");
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let result = through_proxy.commit(vec![put("k", Some(v), b"after")]);
    Some((result, v, version(&mut direct, "k")))
}

#[test]
fn connection_lost_after_commit_was_sent_is_a_timeout_and_it_may_have_applied() {
    let Some((result, before, after)) =
        connection_cut_during_commit(CommitCut::AfterTheServerAnswers)
    else {
        return;
    };
    match result {
        Err(StorageError::Timeout(message)) => {
            assert!(message.contains("COMMIT was in flight"), "{message}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_ne!(
        after, before,
        "the server committed it (what `timeout` warns of)"
    );
}

#[test]
fn connection_lost_before_the_server_saw_commit_is_a_timeout_and_nothing_applied() {
    let Some((result, before, after)) =
        connection_cut_during_commit(CommitCut::BeforeTheServerSeesIt)
    else {
        return;
    };
    assert!(
        matches!(result, Err(StorageError::Timeout(_))),
        "expected a timeout, got {result:?}"
    );
    assert_eq!(after, before, "the server never saw COMMIT and rolled back");
}
