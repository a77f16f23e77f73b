//! Real PostgreSQL and Redis servers for tests, started by the repository's scripts.
//!
//! `make test` runs the tests under `scripts/with-test-servers.sh`, which starts both servers
//! and passes their URLs in `CKPT_TEST_POSTGRES_URL` / `CKPT_TEST_REDIS_URL`, and the URLs of
//! their TLS-only logins in `CKPT_TEST_POSTGRES_TLS_URL` / `CKPT_TEST_REDIS_TLS_URL`
//! ([`shared_tls_server`]). Tests that stop
//! and restart a server start a [`PrivateServer`] of their own instead, so that they never
//! disturb the shared ones.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A server kind, named as its script is: `scripts/{name}-server.sh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Postgres,
    Redis,
}

impl ServerKind {
    pub const ALL: [ServerKind; 2] = [ServerKind::Postgres, ServerKind::Redis];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Postgres => "postgres",
            ServerKind::Redis => "redis",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            ServerKind::Postgres => "CKPT_TEST_POSTGRES_URL",
            ServerKind::Redis => "CKPT_TEST_REDIS_URL",
        }
    }

    fn tls_env_var(self) -> &'static str {
        match self {
            ServerKind::Postgres => "CKPT_TEST_POSTGRES_TLS_URL",
            ServerKind::Redis => "CKPT_TEST_REDIS_TLS_URL",
        }
    }

    fn script(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(format!("{}-server.sh", self.name()))
    }
}

/// True when `CKPT_SKIP_SERVER_TESTS=1` asks to skip server tests (never in CI).
pub fn skipping_servers() -> bool {
    std::env::var("CKPT_SKIP_SERVER_TESTS").as_deref() == Ok("1")
}

fn announce_skip(kind: ServerKind, what: &str) {
    eprintln!(
        "\n!!! SKIPPED {what} on {}: CKPT_SKIP_SERVER_TESTS=1 !!!\n",
        kind.name()
    );
}

/// URL of the shared server of `kind`, started by `scripts/with-test-servers.sh`.
///
/// `None` (after a loud message) only when `CKPT_SKIP_SERVER_TESTS=1`; otherwise a missing URL
/// fails the test, so a server test can never pass by not running.
pub fn shared_server_url(kind: ServerKind, what: &str) -> Option<String> {
    if let Ok(url) = std::env::var(kind.env_var())
        && !url.is_empty()
    {
        return Some(url);
    }
    if skipping_servers() {
        announce_skip(kind, what);
        return None;
    }
    panic!(
        "{what} needs a {} server: run it under `scripts/with-test-servers.sh` (as `make test` \
         does), or set {} to a server's URL; CKPT_SKIP_SERVER_TESTS=1 skips server tests",
        kind.name(),
        kind.env_var()
    );
}

/// The TLS side of a shared server: the URL of its TLS-only login (PostgreSQL: role `ckpt_tls`,
/// `sslmode=verify-full`, client certificate and `password_file`; Redis: `rediss://` on the
/// TLS-only port, client certificate, default user) and the directory of the run's CA and
/// certificates (`ca.crt`, `other-ca.crt` that signed nothing, `client.crt`, `client.key`;
/// the server's certificate is valid for `127.0.0.1` only).
#[derive(Clone, Debug)]
pub struct TlsServer {
    pub url: String,
    pub cert_dir: PathBuf,
}

/// The TLS side of the shared server of `kind`; `None` (after a loud message) only when
/// `CKPT_SKIP_SERVER_TESTS=1`, otherwise a missing URL fails the test.
pub fn shared_tls_server(kind: ServerKind, what: &str) -> Option<TlsServer> {
    let url = match std::env::var(kind.tls_env_var()) {
        Ok(url) if !url.is_empty() => url,
        _ if skipping_servers() => {
            announce_skip(kind, what);
            return None;
        }
        _ => panic!(
            "{what} needs a {} server with TLS: run it under `scripts/with-test-servers.sh` \
             (as `make test` does), or set {} to its TLS URL",
            kind.name(),
            kind.tls_env_var()
        ),
    };
    Some(tls_server(&url))
}

/// The certificate directory is the one of the URL's CA file (`sslrootcert` / `tls_ca_file`).
fn tls_server(url: &str) -> TlsServer {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let ca = query
        .split('&')
        .find_map(|pair| {
            pair.strip_prefix("sslrootcert=")
                .or_else(|| pair.strip_prefix("tls_ca_file="))
        })
        .unwrap_or_else(|| panic!("TLS URL {url} names no CA file"));
    let ca = ca
        .replace("%20", " ")
        .replace("%26", "&")
        .replace("%23", "#");
    let ca = ca.replace("%3F", "?").replace("%25", "%");
    let cert_dir = Path::new(&ca)
        .parent()
        .expect("the CA file is in a directory")
        .to_owned();
    TlsServer {
        url: url.to_owned(),
        cert_dir,
    }
}

/// A server of one's own, in a temporary directory, for tests that stop and restart it.
/// Stopped when dropped.
pub struct PrivateServer {
    pub kind: ServerKind,
    pub url: String,
    dir: tempfile::TempDir,
}

impl PrivateServer {
    /// Starts a new server; `None` (after a loud message) when `CKPT_SKIP_SERVER_TESTS=1`.
    pub fn start(kind: ServerKind, what: &str) -> Option<PrivateServer> {
        if skipping_servers() {
            announce_skip(kind, what);
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("ckpt-{}-", kind.name()))
            .tempdir()
            .expect("temporary directory for a private server");
        let url = run_script(kind, "start", dir.path());
        Some(PrivateServer { kind, url, dir })
    }

    /// Stops the server (fast: in-flight requests fail); its data stays.
    pub fn stop(&self) {
        run_script(self.kind, "stop", self.dir.path());
    }

    /// The TLS side of this server (see [`TlsServer`]).
    pub fn tls(&self) -> TlsServer {
        tls_server(&run_script(self.kind, "tls-url", self.dir.path()))
    }

    /// Starts it again on the same port and data; returns once it accepts connections.
    pub fn restart(&self) {
        let url = run_script(self.kind, "start", self.dir.path());
        assert_eq!(url, self.url, "a restarted server keeps its URL");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.kind.script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Runs `scripts/{kind}-server.sh ACTION DIR` and returns its stdout's last line (the URL).
fn run_script(kind: ServerKind, action: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .arg(kind.script())
        .arg(action)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kind.script().display()));
    assert!(
        out.status.success(),
        "{} {action} {} failed ({}):\n{}",
        kind.script().display(),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Event time of message 0 of [`source_message`]'s log; message `n` is `n * 10` ms later.
const SOURCE_BASE_EVENT_TIME_MS: i64 = 1_700_000_000_000;

/// Message `m-{offset}` of the deterministic source the pipeline tests read: everything about
/// it follows from its offset, so any process can re-read the log from any offset.
pub fn source_message(offset: u64) -> checkpoint_host::ProcessedMessage {
    let step = i64::try_from(offset).unwrap_or(i64::MAX).saturating_mul(10);
    checkpoint_host::ProcessedMessage {
        id: format!("m-{offset}"),
        next_offset: offset + 1,
        event_time_ms: SOURCE_BASE_EVENT_TIME_MS.saturating_add(step),
    }
}

/// The offset of an id made by [`source_message`].
pub fn source_offset(id: &str) -> Option<u64> {
    id.strip_prefix("m-")?.parse().ok()
}

/// `url` with `params` appended as query parameters.
pub fn with_params(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_owned();
    for (name, value) in params {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&format!("{name}={value}"));
    }
    out
}

/// A store name no other test, process or run uses: `{what}_{pid}_{nanos}_{n}`; valid as a
/// PostgreSQL schema and as a Redis prefix when `what` is `a-z 0-9 _`.
pub fn unique_store_name(what: &str) -> String {
    static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}_{}_{nanos}_{n}", std::process::id())
}

/// `url` narrowed to a fresh, empty store of its own on a shared server.
pub fn fresh_store_url(kind: ServerKind, url: &str, what: &str) -> String {
    isolated_url(kind, url, &unique_store_name(what))
}

/// `url` narrowed to a store of its own on a shared server: PostgreSQL's `schema`, Redis's
/// `prefix`. `name` is 1 to 63 of `a-z 0-9 _`, starting with a letter (valid for both).
pub fn isolated_url(kind: ServerKind, url: &str, name: &str) -> String {
    let param = match kind {
        ServerKind::Postgres => "schema",
        ServerKind::Redis => "prefix",
    };
    with_params(url, &[(param, name)])
}

/// Writes checkpoint 1 of `run-1`/`enrich` through the component onto `storage`, checks that
/// its ack came only after the commit, and reads it back as the resume point: the end-to-end
/// proof that a store opened with some setup (TLS, a restricted user) serves the component.
pub fn write_and_read_back(storage: Box<dyn checkpoint_host::Storage>) {
    use checkpoint_host::consumer::RecordingConsumer;
    use checkpoint_host::{Checkpoint, Checkpointer, Options, ResumeOrigin, Watermark};

    let consumer = RecordingConsumer::new();
    let options = Options {
        namespace: "e2e".into(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    };
    let mut checkpointer = Checkpointer::open(storage, Box::new(consumer.clone()), &options)
        .expect("a checkpointer on the store");
    let fresh = checkpointer
        .resume_point("run-1", "enrich")
        .expect("resume point of an empty store");
    assert_eq!(fresh.origin, ResumeOrigin::Fresh);
    let checkpoint = Checkpoint {
        run_id: "run-1".into(),
        stage: "enrich".into(),
        sequence: 1,
        epoch: 1,
        watermark: Watermark {
            offset: 42,
            event_time_ms: 1_700_000_000_000,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: 1_700_000_000_500,
    };
    let receipt = checkpointer
        .write(&checkpoint, &["m-41".to_owned()])
        .expect("a durable write");
    assert_eq!(receipt.sequence, 1);
    assert_eq!(consumer.acks(), [vec!["m-41".to_owned()]]);
    let resume = checkpointer
        .resume_point("run-1", "enrich")
        .expect("resume point");
    assert_eq!(resume.origin, ResumeOrigin::Latest);
    assert_eq!(resume.point.watermark.offset, 42);
}

/// `url` with query parameter `name` set to `value` (replaced when present, else appended).
pub fn set_param(url: &str, name: &str, value: &str) -> String {
    let without = remove_param(url, name);
    with_params(&without, &[(name, value)])
}

/// `url` without query parameter `name`.
pub fn remove_param(url: &str, name: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The port of a `scheme://[user@]host:port/...` URL.
pub fn url_port(url: &str) -> u16 {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{url} names no port"))
}

/// Writes `contents` into a new file `name` in `dir` with mode 0600 and returns its path, as
/// a deployment keeps a password file.
pub fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a private file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }
    path
}

/// A password no other test or run uses, without URL-special characters.
pub fn fresh_password() -> String {
    format!("pw-{}", unique_store_name("s3cret"))
}
