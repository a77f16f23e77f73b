//! TLS against real servers, for both network stores (docs/deployment.md): a verified connection
//! serves the component end to end; a server certificate signed by an untrusted CA, one that is
//! not valid for the host name, and a plain connection to a TLS-only login or port are refused,
//! each with a message that names the server and the reason, and never the password.
//!
//! The servers are the shared ones of `scripts/with-test-servers.sh`, which listen with TLS
//! too: a CA and certificates made for the run (the server's valid for 127.0.0.1 only), a
//! TLS-only PostgreSQL login (`ckpt_tls`: client certificate plus a password from a file) and a
//! TLS-only Redis port that requires a client certificate. Under CI these tests never skip.
//!
//! Each refusal is a [`Refusal`] case, checked by its own test; `tls_summary` checks them all
//! once more, with the verified connections, and prints one line for `make reliability`
//! (scripts/reliability.sh): `tls refusals: N of N refused (...); verified connections: ...`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use checkpoint_host::storage::{OpenErrorKind, open_storage};

use checkpoint_testkit::servers::{
    ServerKind, remove_param, set_param, shared_server_url, shared_tls_server, unique_store_name,
    url_port, write_and_read_back,
};

/// A connection that must be refused: its URL, and what the refusal must say.
struct Refusal {
    /// Short name, for the summary line: "untrusted CA", "wrong host name", ...
    what: &'static str,
    url: String,
    /// The error kind it must have (`Refused` but for a plain connection to a TLS-only Redis
    /// port, which can only see the connection close).
    kind: Option<OpenErrorKind>,
    /// Texts the message must contain: the server, the reason, what to change.
    names: Vec<String>,
    /// What the message must never contain.
    secret: String,
}

impl Refusal {
    /// `Ok` when the open fails as the case says: with the kind, naming every name, without
    /// the secret.
    fn check(&self) -> Result<(), String> {
        let err = match open_storage(&self.url) {
            Ok(_) => return Err(format!("{}: the connection was accepted", self.what)),
            Err(err) => err,
        };
        let text = err.to_string();
        if let Some(kind) = self.kind
            && err.kind() != kind
        {
            return Err(format!(
                "{}: kind {:?}, not {kind:?}: {text}",
                self.what,
                err.kind()
            ));
        }
        if let Some(name) = self.names.iter().find(|name| !text.contains(name.as_str())) {
            return Err(format!("{}: expected {name:?} in: {text}", self.what));
        }
        if text.contains(&self.secret) {
            return Err(format!("{}: the message leaks a secret: {text}", self.what));
        }
        Ok(())
    }

    fn assert(&self) {
        self.check().unwrap_or_else(|e| panic!("{e}"));
    }
}

fn refusal(what: &'static str, url: String, names: &[&str], secret: &str) -> Refusal {
    Refusal {
        what,
        url,
        kind: Some(OpenErrorKind::Refused),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        secret: secret.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A store for the TLS login: its URL, the certificate directory, the login's password.
struct PgStore {
    url: String,
    certs: PathBuf,
    password: String,
}

/// The TLS login's URL narrowed to a fresh schema that the login owns (made by the superuser):
/// the TLS role has no other right, so these tests also run without a superuser.
fn postgres_tls_store(what: &str) -> Option<PgStore> {
    let tls = shared_tls_server(ServerKind::Postgres, what)?;
    let admin_url = shared_server_url(ServerKind::Postgres, what)?;
    let schema = unique_store_name("tls");
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("superuser");
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema} AUTHORIZATION ckpt_tls"))
        .expect("a schema for the TLS login");
    let password = std::fs::read_to_string(tls.cert_dir.join("ckpt_tls.password"))
        .expect("the TLS login's password file")
        .trim()
        .to_owned();
    Some(PgStore {
        url: set_param(&tls.url, "schema", &schema),
        certs: tls.cert_dir,
        password,
    })
}

fn postgres_untrusted_ca(store: &PgStore) -> Refusal {
    let other_ca = store.certs.join("other-ca.crt");
    let url = set_param(&store.url, "sslrootcert", &other_ca.display().to_string());
    let port = url_port(&url).to_string();
    refusal(
        "untrusted CA",
        url,
        &[
            "127.0.0.1",
            &port,
            "not signed by a trusted CA",
            "verify-full",
        ],
        &store.password,
    )
}

/// Connects to 127.0.0.1 but checks the certificate against `localhost`, which it does not
/// name (hostaddr: no name lookup involved).
fn postgres_wrong_host_url(store: &PgStore) -> String {
    store.url.replacen("@127.0.0.1:", "@localhost:", 1) + "&hostaddr=127.0.0.1"
}

fn postgres_wrong_host(store: &PgStore) -> Refusal {
    refusal(
        "wrong host name",
        postgres_wrong_host_url(store),
        &["localhost", "not valid for the host name localhost"],
        &store.password,
    )
}

fn postgres_plain_to_tls_only(store: &PgStore) -> Refusal {
    let mut plain = store.url.clone();
    for param in ["sslrootcert", "sslcert", "sslkey"] {
        plain = remove_param(&plain, param);
    }
    refusal(
        "plain to TLS-only login",
        set_param(&plain, "sslmode", "disable"),
        &["no encryption", "over TLS only", "sslmode=verify-full"],
        &store.password,
    )
}

/// The TLS handshake succeeds, but the login wants a client certificate.
fn postgres_no_client_certificate(store: &PgStore) -> Refusal {
    refusal(
        "no client certificate",
        remove_param(&remove_param(&store.url, "sslcert"), "sslkey"),
        &["certificate"],
        &store.password,
    )
}

/// `sslmode=require` with a CA given checks the chain (as verify-ca).
fn postgres_require_with_untrusted_ca(store: &PgStore) -> Refusal {
    let url = set_param(
        &remove_param(&store.url, "sslrootcert"),
        "sslmode",
        "require",
    );
    let url = set_param(
        &url,
        "sslrootcert",
        &store.certs.join("other-ca.crt").display().to_string(),
    );
    refusal(
        "require with an untrusted CA",
        url,
        &["not signed by a trusted CA"],
        &store.password,
    )
}

#[test]
fn postgres_over_verified_tls_serves_the_component_end_to_end() {
    let Some(store) = postgres_tls_store("postgres TLS end to end") else {
        return;
    };
    assert!(store.url.contains("sslmode=verify-full"), "{}", store.url);
    let storage = open_storage(&store.url).expect("a verified TLS connection");
    write_and_read_back(storage);
    // And again on a new pool: the checkpoint is durable on the server.
    let mut storage = open_storage(&store.url).expect("a verified TLS connection");
    let keys = storage.list_keys("").expect("list keys over TLS");
    assert!(!keys.is_empty(), "the checkpoint is stored");
}

#[test]
fn postgres_refuses_a_server_certificate_from_an_untrusted_ca() {
    let Some(store) = postgres_tls_store("postgres TLS untrusted CA") else {
        return;
    };
    postgres_untrusted_ca(&store).assert();
}

#[test]
fn postgres_refuses_a_certificate_for_another_host_name_unless_verify_ca() {
    let Some(store) = postgres_tls_store("postgres TLS wrong host name") else {
        return;
    };
    postgres_wrong_host(&store).assert();
    // verify-ca checks the CA only: the same server is accepted.
    let url = set_param(&postgres_wrong_host_url(&store), "sslmode", "verify-ca");
    write_and_read_back(open_storage(&url).expect("verify-ca ignores the host name"));
}

#[test]
fn postgres_plain_connection_to_a_tls_only_login_fails_clearly() {
    let Some(store) = postgres_tls_store("postgres plain to TLS-only") else {
        return;
    };
    postgres_plain_to_tls_only(&store).assert();
    // Without the client certificate, the TLS handshake succeeds but the login is refused.
    postgres_no_client_certificate(&store).assert();
}

#[test]
fn postgres_require_encrypts_without_checking_the_certificate() {
    let Some(store) = postgres_tls_store("postgres sslmode=require") else {
        return;
    };
    // libpq's meaning: even a CA that signed nothing is not consulted...
    let url = set_param(
        &remove_param(&store.url, "sslrootcert"),
        "sslmode",
        "require",
    );
    write_and_read_back(open_storage(&url).expect("require does not verify"));
    // ...unless it is given: then the chain is checked (as verify-ca).
    postgres_require_with_untrusted_ca(&store).assert();
}

// ---------------------------------------------------------------------------------------------
// Redis

/// The sentinel that no Redis message may show (the TLS port's default user has no password;
/// the redaction of real ones is tested with the password files).
const REDIS_SECRET: &str = "s3cret";

fn redis_tls_url(what: &str) -> Option<(String, PathBuf)> {
    let tls = shared_tls_server(ServerKind::Redis, what)?;
    let url = set_param(&tls.url, "prefix", &unique_store_name("tls"));
    Some((url, tls.cert_dir))
}

fn redis_untrusted_ca(url: &str, certs: &Path) -> Refusal {
    let url = set_param(
        url,
        "tls_ca_file",
        &certs.join("other-ca.crt").display().to_string(),
    );
    let port = url_port(&url).to_string();
    refusal(
        "untrusted CA",
        url,
        &["127.0.0.1", &port, "not signed by a trusted CA"],
        REDIS_SECRET,
    )
}

/// The certificate names 127.0.0.1 only; `localhost` reaches the same server.
fn redis_wrong_host(url: &str) -> Refusal {
    refusal(
        "wrong host name",
        url.replacen("rediss://127.0.0.1:", "rediss://localhost:", 1),
        &["localhost", "not valid for the host name localhost"],
        REDIS_SECRET,
    )
}

/// The port speaks TLS only: the plain client sees the connection close, so the kind is not
/// checked, only that the message names the server and says what to change.
fn redis_plain_to_tls_only(url: &str) -> Refusal {
    let mut plain = url.replacen("rediss://", "redis://", 1);
    for param in ["tls_ca_file", "tls_cert_file", "tls_key_file"] {
        plain = remove_param(&plain, param);
    }
    let port = url_port(url).to_string();
    Refusal {
        kind: None,
        ..refusal(
            "plain to TLS-only port",
            set_param(&plain, "connect_timeout_ms", "5000"),
            &[&port, "rediss://"],
            REDIS_SECRET,
        )
    }
}

/// TLS without a client certificate, which this server requires.
fn redis_no_client_certificate(url: &str) -> Refusal {
    refusal(
        "no client certificate",
        remove_param(&remove_param(url, "tls_cert_file"), "tls_key_file"),
        &["certificate"],
        REDIS_SECRET,
    )
}

fn redis_missing_ca_file(url: &str, certs: &Path) -> Refusal {
    let missing = certs.join("no-such-ca.crt");
    refusal(
        "missing CA file",
        set_param(url, "tls_ca_file", &missing.display().to_string()),
        &["no-such-ca.crt"],
        REDIS_SECRET,
    )
}

/// A CA file that is not PEM at all, written into `dir`.
fn redis_junk_ca_file(url: &str, dir: &Path) -> Refusal {
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    refusal(
        "CA file not PEM",
        set_param(url, "tls_ca_file", &junk.display().to_string()),
        &["junk.pem"],
        REDIS_SECRET,
    )
}

#[test]
fn redis_over_verified_tls_serves_the_component_end_to_end() {
    let Some((url, _)) = redis_tls_url("redis TLS end to end") else {
        return;
    };
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    write_and_read_back(open_storage(&url).expect("a verified TLS connection"));
    let mut storage = open_storage(&url).expect("a verified TLS connection");
    assert!(!storage.list_keys("").expect("list keys").is_empty());
}

#[test]
fn redis_refuses_a_server_certificate_from_an_untrusted_ca() {
    let Some((url, certs)) = redis_tls_url("redis TLS untrusted CA") else {
        return;
    };
    redis_untrusted_ca(&url, &certs).assert();
}

#[test]
fn redis_refuses_a_certificate_for_another_host_name() {
    let Some((url, _)) = redis_tls_url("redis TLS wrong host name") else {
        return;
    };
    redis_wrong_host(&url).assert();
}

#[test]
fn redis_plain_connection_to_the_tls_only_port_fails_clearly() {
    let Some((url, _)) = redis_tls_url("redis plain to TLS-only") else {
        return;
    };
    redis_plain_to_tls_only(&url).assert();
    redis_no_client_certificate(&url).assert();
}

#[test]
fn redis_tls_files_that_cannot_be_used_are_refused_by_path() {
    let Some((url, certs)) = redis_tls_url("redis TLS bad files") else {
        return;
    };
    redis_missing_ca_file(&url, &certs).assert();
    let dir = tempfile::tempdir().expect("temp dir");
    redis_junk_ca_file(&url, dir.path()).assert();
}

// ---------------------------------------------------------------------------------------------
// The summary line

/// Every refusal case of both stores once more, and a verified connection to each, counted in
/// one line for scripts/reliability.sh. The line is printed before the assertion, so a failure
/// shows in it too.
#[test]
fn tls_summary() {
    let (Some(pg), Some((redis_url, redis_certs))) = (
        postgres_tls_store("TLS summary"),
        redis_tls_url("TLS summary"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = [
        (
            "postgres",
            vec![
                postgres_untrusted_ca(&pg),
                postgres_wrong_host(&pg),
                postgres_plain_to_tls_only(&pg),
                postgres_no_client_certificate(&pg),
                postgres_require_with_untrusted_ca(&pg),
            ],
        ),
        (
            "redis",
            vec![
                redis_untrusted_ca(&redis_url, &redis_certs),
                redis_wrong_host(&redis_url),
                redis_plain_to_tls_only(&redis_url),
                redis_no_client_certificate(&redis_url),
                redis_missing_ca_file(&redis_url, &redis_certs),
                redis_junk_ca_file(&redis_url, dir.path()),
            ],
        ),
    ];
    let mut failures = Vec::new();
    let (mut total, mut refused) = (0, 0);
    let mut kinds = Vec::new();
    for (store, cases) in &stores {
        let names: Vec<&str> = cases.iter().map(|case| case.what).collect();
        kinds.push(format!("{store}: {}", names.join(", ")));
        for case in cases {
            total += 1;
            match case.check() {
                Ok(()) => refused += 1,
                Err(e) => failures.push(format!("{store} {e}")),
            }
        }
    }
    let mut served = 0;
    for (store, url) in [("postgres", &pg.url), ("redis", &redis_url)] {
        let opened = open_storage(url).map_err(|e| e.to_string());
        match opened.and_then(|storage| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_and_read_back(storage)
            }))
            .map_err(|_| "the write and read back failed".to_owned())
        }) {
            Ok(()) => served += 1,
            Err(e) => failures.push(format!("{store} verified connection: {e}")),
        }
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "tls refusals: {refused} of {total} refused ({}), each naming the server and the reason, \
         none showing the password; verified connections: {served} of 2 served end to end \
         (postgres sslmode=verify-full, redis rediss://, client certificates){}",
        kinds.join("; "),
        if failures.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", failures.join("; "))
        }
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
