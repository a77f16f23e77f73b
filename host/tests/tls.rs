//! TLS against real servers, for both network stores (docs/deployment.md): a verified connection
//! serves the component end to end; a server certificate signed by an untrusted CA, one that is
//! not valid for the host name, and a plain connection to a TLS-only login or port are refused,
//! each with a message that names the server and the reason, and never the password.
//!
//! The servers are the shared ones of `scripts/with-test-servers.sh`, which listen with TLS
//! too: a CA and certificates made for the run (the server's valid for 127.0.0.1 only), a
//! TLS-only PostgreSQL login (`ckpt_tls`: client certificate plus a password from a file) and a
//! TLS-only Redis port that requires a client certificate. Under CI these tests never skip.

use checkpoint_host::storage::{OpenErrorKind, open_storage};

use checkpoint_testkit::servers::{
    ServerKind, remove_param, set_param, shared_server_url, shared_tls_server, unique_store_name,
    url_port, write_and_read_back,
};

/// A message that names the server and says why, but shows no secret.
fn assert_refused(err: &checkpoint_host::storage::OpenError, names: &[&str], secret: &str) {
    let text = err.to_string();
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{text}");
    for name in names {
        assert!(text.contains(name), "expected {name:?} in: {text}");
    }
    assert!(!text.contains(secret), "the message leaks a secret: {text}");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The TLS login's URL narrowed to a fresh schema that the login owns (made by the superuser):
/// the TLS role has no other right, so these tests also run without a superuser.
fn postgres_tls_store(what: &str) -> Option<(String, std::path::PathBuf, String)> {
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
    Some((
        set_param(&tls.url, "schema", &schema),
        tls.cert_dir,
        password,
    ))
}

#[test]
fn postgres_over_verified_tls_serves_the_component_end_to_end() {
    let Some((url, _, _)) = postgres_tls_store("postgres TLS end to end") else {
        return;
    };
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let storage = open_storage(&url).expect("a verified TLS connection");
    write_and_read_back(storage);
    // And again on a new pool: the checkpoint is durable on the server.
    let mut storage = open_storage(&url).expect("a verified TLS connection");
    let keys = storage.list_keys("").expect("list keys over TLS");
    assert!(!keys.is_empty(), "the checkpoint is stored");
}

#[test]
fn postgres_refuses_a_server_certificate_from_an_untrusted_ca() {
    let Some((url, certs, password)) = postgres_tls_store("postgres TLS untrusted CA") else {
        return;
    };
    let other_ca = certs.join("other-ca.crt");
    let url = set_param(&url, "sslrootcert", &other_ca.display().to_string());
    let err = open_storage(&url).map(drop).expect_err("untrusted CA");
    let port = url_port(&url).to_string();
    assert_refused(
        &err,
        &[
            "127.0.0.1",
            &port,
            "not signed by a trusted CA",
            "verify-full",
        ],
        &password,
    );
}

#[test]
fn postgres_refuses_a_certificate_for_another_host_name_unless_verify_ca() {
    let Some((url, _, password)) = postgres_tls_store("postgres TLS wrong host name") else {
        return;
    };
    // Connect to 127.0.0.1 but check the certificate against `localhost`, which it does not
    // name (hostaddr: no name lookup involved).
    let url = url.replacen("@127.0.0.1:", "@localhost:", 1) + "&hostaddr=127.0.0.1";
    let err = open_storage(&url).map(drop).expect_err("wrong host name");
    assert_refused(
        &err,
        &["localhost", "not valid for the host name localhost"],
        &password,
    );
    // verify-ca checks the CA only: the same server is accepted.
    let url = set_param(&url, "sslmode", "verify-ca");
    write_and_read_back(open_storage(&url).expect("verify-ca ignores the host name"));
}

#[test]
fn postgres_plain_connection_to_a_tls_only_login_fails_clearly() {
    let Some((url, _, password)) = postgres_tls_store("postgres plain to TLS-only") else {
        return;
    };
    let mut plain = url.clone();
    for param in ["sslrootcert", "sslcert", "sslkey"] {
        plain = remove_param(&plain, param);
    }
    let plain = set_param(&plain, "sslmode", "disable");
    let err = open_storage(&plain)
        .map(drop)
        .expect_err("the login needs TLS");
    assert_refused(
        &err,
        &["no encryption", "over TLS only", "sslmode=verify-full"],
        &password,
    );
    // Without the client certificate, the TLS handshake succeeds but the login is refused.
    let no_cert = remove_param(&remove_param(&url, "sslcert"), "sslkey");
    let err = open_storage(&no_cert)
        .map(drop)
        .expect_err("no client certificate");
    assert_refused(&err, &["certificate"], &password);
}

#[test]
fn postgres_require_encrypts_without_checking_the_certificate() {
    let Some((url, certs, _)) = postgres_tls_store("postgres sslmode=require") else {
        return;
    };
    // libpq's meaning: even a CA that signed nothing is not consulted...
    let url = set_param(&remove_param(&url, "sslrootcert"), "sslmode", "require");
    write_and_read_back(open_storage(&url).expect("require does not verify"));
    // ...unless it is given: then the chain is checked (as verify-ca).
    let with_ca = set_param(
        &url,
        "sslrootcert",
        &certs.join("other-ca.crt").display().to_string(),
    );
    let err = open_storage(&with_ca).map(drop).expect_err("untrusted CA");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Redis

fn redis_tls_url(what: &str) -> Option<(String, std::path::PathBuf)> {
    let tls = shared_tls_server(ServerKind::Redis, what)?;
    let url = set_param(&tls.url, "prefix", &unique_store_name("tls"));
    Some((url, tls.cert_dir))
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
    let url = set_param(
        &url,
        "tls_ca_file",
        &certs.join("other-ca.crt").display().to_string(),
    );
    let err = open_storage(&url).map(drop).expect_err("untrusted CA");
    let port = url_port(&url).to_string();
    assert_refused(
        &err,
        &["127.0.0.1", &port, "not signed by a trusted CA"],
        "s3cret",
    );
}

#[test]
fn redis_refuses_a_certificate_for_another_host_name() {
    let Some((url, _)) = redis_tls_url("redis TLS wrong host name") else {
        return;
    };
    // The certificate names 127.0.0.1 only; `localhost` reaches the same server.
    let url = url.replacen("rediss://127.0.0.1:", "rediss://localhost:", 1);
    let err = open_storage(&url).map(drop).expect_err("wrong host name");
    assert_refused(
        &err,
        &["localhost", "not valid for the host name localhost"],
        "s3cret",
    );
}

#[test]
fn redis_plain_connection_to_the_tls_only_port_fails_clearly() {
    let Some((url, _)) = redis_tls_url("redis plain to TLS-only") else {
        return;
    };
    let mut plain = url.replacen("rediss://", "redis://", 1);
    for param in ["tls_ca_file", "tls_cert_file", "tls_key_file"] {
        plain = remove_param(&plain, param);
    }
    let plain = set_param(&plain, "connect_timeout_ms", "5000");
    let err = open_storage(&plain)
        .map(drop)
        .expect_err("the port speaks TLS only");
    let text = err.to_string();
    let port = url_port(&url).to_string();
    assert!(text.contains(&port), "names the server: {text}");
    assert!(text.contains("rediss://"), "says what to change: {text}");

    // And TLS without a client certificate, which this server requires.
    let no_cert = remove_param(&remove_param(&url, "tls_cert_file"), "tls_key_file");
    let err = open_storage(&no_cert)
        .map(drop)
        .expect_err("no client certificate");
    assert_refused(&err, &["certificate"], "s3cret");
}

#[test]
fn redis_tls_files_that_cannot_be_used_are_refused_by_path() {
    let Some((url, certs)) = redis_tls_url("redis TLS bad files") else {
        return;
    };
    let missing = certs.join("no-such-ca.crt");
    let err = open_storage(&set_param(
        &url,
        "tls_ca_file",
        &missing.display().to_string(),
    ))
    .map(drop)
    .expect_err("missing CA file");
    assert_refused(&err, &["no-such-ca.crt"], "s3cret");
    // A CA file that is not PEM at all.
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let err = open_storage(&set_param(&url, "tls_ca_file", &junk.display().to_string()))
        .map(drop)
        .expect_err("no certificate in the CA file");
    assert_refused(&err, &["junk.pem"], "s3cret");
}
