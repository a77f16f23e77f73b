//! The least privileges of `docs/deployment.md`, tested as written there: the SQL blocks and the
//! ACL lines are read from the document, the example names swapped for fresh ones, and run by
//! the superuser (or the default Redis user) of the shared test servers. Everything after that
//! runs as the restricted user, never a superuser: the whole storage contract (each check on
//! a fresh store), a checkpoint written and read back through the component, and what the user
//! must not be able to do. Passwords come from files (`password_file`, libpq's `passfile`).

use std::path::Path;

use checkpoint_host::Storage;
use checkpoint_host::storage::{OpenErrorKind, PostgresStorage, RedisStorage, open_storage};
use checkpoint_testkit::servers::{
    ServerKind, fresh_password, private_file, set_param, shared_server_url, unique_store_name,
    write_and_read_back,
};
use checkpoint_testkit::storage_contract::CHECKS;

/// The fenced block of docs/deployment.md whose first line is `marker`, without that line.
fn doc_block(marker: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deployment.md");
    let doc = std::fs::read_to_string(&path).expect("docs/deployment.md");
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") && lines.clone().next() == Some(marker) {
            lines.next();
            let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
            return body.join("\n");
        }
    }
    panic!("docs/deployment.md has no block starting with {marker:?}");
}

/// `text` with every whole-word `from` (an SQL or ACL name) replaced by `to`.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(word) || after.is_some_and(word) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The advisory lock that serialises the tests' grants.
const GRANT_LOCK: i64 = 0x636b_7074_6772; // "ckptgr"

struct Postgres {
    admin_url: String,
    admin: postgres::Client,
    /// Password files of the restricted roles.
    secrets: tempfile::TempDir,
}

fn postgres(what: &str) -> Option<Postgres> {
    let admin_url = shared_server_url(ServerKind::Postgres, what)?;
    let admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("superuser");
    let secrets = tempfile::tempdir().expect("temp dir");
    Some(Postgres {
        admin_url,
        admin,
        secrets,
    })
}

impl Postgres {
    /// Runs the document's block `marker` for `role` on `schema`, and returns the role's URL
    /// (password in a file). The test server asks for the password only of the members of
    /// `ckpt_password_login` (scripts/postgres-server.sh), so the role joins it.
    fn grant(&mut self, marker: &str, example_role: &str, role: &str, schema: &str) -> String {
        let password = fresh_password();
        let sql = doc_block(marker);
        let sql = replace_word(&sql, example_role, role);
        let sql = replace_word(&sql, "checkpoint", schema);
        let sql = replace_word(&sql, "pipelines", "postgres");
        let sql = sql.replace("'change-me'", &format!("'{password}'"));
        // One grant at a time: concurrent GRANTs on the database row fail with "tuple
        // concurrently updated" (the lock is released at the end of the transaction).
        let serialised =
            format!("BEGIN; SELECT pg_advisory_xact_lock({GRANT_LOCK}); {sql}; COMMIT;");
        self.admin
            .batch_execute(&serialised)
            .unwrap_or_else(|e| panic!("{marker}: {e:?}\n{sql}"));
        self.admin
            .batch_execute(&format!("GRANT ckpt_password_login TO {role}"))
            .expect("password login");
        let flags = self
            .admin
            .query_one(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles \
                 WHERE rolname = $1",
                &[&role],
            )
            .expect("the role exists");
        for i in 0..4 {
            assert!(!flags.get::<_, bool>(i), "{role} has a special right");
        }
        let file = private_file(self.secrets.path(), role, &format!("{password}\n"));
        let url = self
            .admin_url
            .replacen("://postgres@", &format!("://{role}@"), 1);
        let url = set_param(&url, "schema", schema);
        set_param(&url, "password_file", &file.display().to_string())
    }

    /// A direct client session as the role of `url` (to try what the store never does).
    fn session(&self, role_url: &str) -> postgres::Client {
        let file = role_url
            .split('&')
            .find_map(|p| p.strip_prefix("password_file="))
            .expect("a password file");
        let password = std::fs::read_to_string(file).expect("password");
        let base = role_url.split_once('?').map_or(role_url, |(b, _)| b);
        let mut config: postgres::Config = base.parse().expect("config");
        config.password(password.trim());
        config.connect(postgres::NoTls).expect("the role logs in")
    }
}

fn assert_denied(result: Result<u64, postgres::Error>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{what}: {err:?}"
    );
}

#[test]
fn postgres_role_that_owns_only_its_schema_runs_the_whole_contract() {
    let Some(mut pg) = postgres("postgres schema-owner role") else {
        return;
    };
    for (name, check) in CHECKS {
        let role = unique_store_name("lp_owner");
        let url = pg.grant("-- grants: owner", "ckpt_app", &role, &role);
        let mut store = PostgresStorage::open(&url).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&mut store as &mut dyn Storage);
    }
}

#[test]
fn postgres_schema_owner_serves_the_component_and_may_do_nothing_else() {
    let Some(mut pg) = postgres("postgres schema-owner role, limits") else {
        return;
    };
    let role = unique_store_name("lp_owner");
    let url = pg.grant("-- grants: owner", "ckpt_app", &role, &role);
    write_and_read_back(open_storage(&url).expect("the owner opens its store"));

    let mut session = pg.session(&url);
    assert_denied(
        session.execute(&format!("CREATE SCHEMA {role}_more"), &[]),
        "create another schema",
    );
    assert_denied(
        session.execute("CREATE TABLE public.t (x int)", &[]),
        "create a table in public",
    );
    // A store in a schema the role does not own cannot be made.
    let elsewhere = set_param(&url, "schema", &unique_store_name("lp_elsewhere"));
    let err = open_storage(&elsewhere)
        .map(drop)
        .expect_err("no CREATE on the database");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("lacks a privilege"), "{err}");

    // A wrong password is refused without showing either password.
    let wrong = private_file(pg.secrets.path(), "wrong", "wrong-s3cret\n");
    let bad = set_param(&url, "password_file", &wrong.display().to_string());
    let err = open_storage(&bad).map(drop).expect_err("wrong password");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn postgres_libpq_password_file_logs_the_role_in() {
    let Some(mut pg) = postgres("postgres passfile") else {
        return;
    };
    let role = unique_store_name("lp_pgpass");
    let url = pg.grant("-- grants: owner", "ckpt_app", &role, &role);
    let password = std::fs::read_to_string(pg.secrets.path().join(&role)).expect("password");
    let port = checkpoint_testkit::servers::url_port(&url);
    let pgpass = private_file(
        pg.secrets.path(),
        "pgpass",
        &format!(
            "127.0.0.1:{port}:postgres:someone_else:wrong\n127.0.0.1:{port}:*:{role}:{}\n",
            password.trim()
        ),
    );
    let url = checkpoint_testkit::servers::remove_param(&url, "password_file");
    let url = set_param(&url, "passfile", &pgpass.display().to_string());
    write_and_read_back(open_storage(&url).expect("the password from the passfile"));
}

#[test]
fn postgres_read_write_role_on_an_existing_schema_runs_the_whole_contract() {
    let Some(mut pg) = postgres("postgres read-write role") else {
        return;
    };
    for (name, check) in CHECKS {
        // The store exists first: opened once by an administrator.
        let schema = unique_store_name("lp_rw");
        drop(PostgresStorage::open(&set_param(&pg.admin_url, "schema", &schema)).expect("admin"));
        let role = unique_store_name("lp_rw_role");
        let url = pg.grant("-- grants: read-write", "ckpt_rw", &role, &schema);
        let mut store = PostgresStorage::open(&url).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&mut store as &mut dyn Storage);
    }
}

#[test]
fn postgres_read_write_role_serves_the_component_and_cannot_change_the_schema() {
    let Some(mut pg) = postgres("postgres read-write role, limits") else {
        return;
    };
    let schema = unique_store_name("lp_rw");
    drop(PostgresStorage::open(&set_param(&pg.admin_url, "schema", &schema)).expect("admin"));
    let role = unique_store_name("lp_rw_role");
    let url = pg.grant("-- grants: read-write", "ckpt_rw", &role, &schema);
    write_and_read_back(open_storage(&url).expect("read-write opens the existing store"));

    let mut session = pg.session(&url);
    for (sql, what) in [
        (format!("DROP TABLE {schema}.ckpt_entries"), "drop a table"),
        (
            format!("ALTER TABLE {schema}.ckpt_entries ADD COLUMN x int"),
            "alter a table",
        ),
        (format!("CREATE TABLE {schema}.t (x int)"), "create a table"),
        (
            format!("UPDATE {schema}.ckpt_schema SET version = 2"),
            "change the schema marker",
        ),
    ] {
        let result = session.execute(sql.as_str(), &[]);
        // Dropping or altering another's table is refused as "must be owner" (42501 too).
        assert_denied(result, what);
    }
    let new_store = set_param(&url, "schema", &unique_store_name("lp_new"));
    let err = open_storage(&new_store)
        .map(drop)
        .expect_err("cannot create a store");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("lacks a privilege"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Redis

struct Redis {
    admin_url: String,
    admin: redis::Connection,
    secrets: tempfile::TempDir,
}

fn redis_server(what: &str) -> Option<Redis> {
    let admin_url = shared_server_url(ServerKind::Redis, what)?;
    let admin = redis::Client::open(admin_url.as_str())
        .and_then(|c| c.get_connection())
        .expect("default user");
    let secrets = tempfile::tempdir().expect("temp dir");
    Some(Redis {
        admin_url,
        admin,
        secrets,
    })
}

impl Redis {
    /// Runs the document's ACL line `marker` for a new user on `prefix`; returns the user's
    /// URL (password in a file) and password.
    fn grant(&mut self, marker: &str, prefix: &str) -> (String, String) {
        let user = unique_store_name("lp_user");
        let password = fresh_password();
        let line = doc_block(marker);
        let mut args = line.split_whitespace();
        assert_eq!(
            (args.next(), args.next()),
            (Some("ACL"), Some("SETUSER")),
            "{line}"
        );
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER");
        for arg in args {
            let arg = match arg {
                "ckpt_app" => user.clone(),
                ">change-me" => format!(">{password}"),
                "~{ckpt}:*" => format!("~{{{prefix}}}:*"),
                other => other.to_owned(),
            };
            cmd.arg(arg);
        }
        cmd.query::<()>(&mut self.admin)
            .unwrap_or_else(|e| panic!("{marker}: {e}"));
        let file = private_file(self.secrets.path(), &user, &password);
        let url = self
            .admin_url
            .replacen("redis://", &format!("redis://{user}@"), 1);
        let url = set_param(&url, "prefix", prefix);
        (
            set_param(&url, "password_file", &file.display().to_string()),
            password,
        )
    }
}

/// A raw connection as the restricted user of `url`.
fn redis_session(admin_url: &str, url: &str, password: &str) -> redis::Connection {
    let user = url
        .trim_start_matches("redis://")
        .split('@')
        .next()
        .expect("a user");
    let with_user = admin_url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    redis::Client::open(with_user.as_str())
        .and_then(|c| c.get_connection())
        .expect("the user logs in")
}

fn assert_noperm(conn: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let err = cmd
        .query::<redis::Value>(conn)
        .expect_err(&format!("{args:?} is allowed"));
    assert_eq!(err.code(), Some("NOPERM"), "{args:?}: {err}");
}

#[test]
fn redis_acl_user_runs_the_whole_contract() {
    let Some(mut server) = redis_server("redis least-privilege ACL") else {
        return;
    };
    for (name, check) in CHECKS {
        let prefix = unique_store_name("lp");
        let (url, _) = server.grant("# acl: strict", &prefix);
        let mut store = RedisStorage::open(&url).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&mut store as &mut dyn Storage);
    }
}

#[test]
fn redis_acl_user_serves_the_component_and_may_do_nothing_else() {
    let Some(mut server) = redis_server("redis least-privilege ACL, limits") else {
        return;
    };
    let prefix = unique_store_name("lp");
    let (url, password) = server.grant("# acl: strict", &prefix);
    write_and_read_back(open_storage(&url).expect("the restricted user opens the store"));

    let mut conn = redis_session(&server.admin_url, &url, &password);
    assert_noperm(&mut conn, &["GET", "{other}:schema"]);
    assert_noperm(&mut conn, &["SET", "elsewhere", "x"]);
    assert_noperm(&mut conn, &["FLUSHALL"]);
    assert_noperm(&mut conn, &["KEYS", "*"]);
    assert_noperm(&mut conn, &["EVAL", "return 1", "0"]);
    assert_noperm(&mut conn, &["CONFIG", "SET", "appendfsync", "no"]);
    // A script the user loads runs under the same ACL.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('FLUSHALL')")
        .query(&mut conn)
        .expect("SCRIPT LOAD is allowed");
    let err = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(0)
        .query::<redis::Value>(&mut conn)
        .expect_err("the script may not flush");
    assert!(err.to_string().contains("can't run this command"), "{err}");

    // A prefix outside the user's key pattern cannot be opened.
    let other = set_param(&url, "prefix", &unique_store_name("lp_other"));
    let err = open_storage(&other).map(drop).expect_err("outside the ACL");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("ACL"), "{err}");

    // A wrong password is refused without showing it.
    let wrong = private_file(server.secrets.path(), "wrong", "wrong-s3cret");
    let bad = set_param(&url, "password_file", &wrong.display().to_string());
    let err = open_storage(&bad).map(drop).expect_err("wrong password");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn redis_acl_without_config_needs_durability_relaxed() {
    let Some(mut server) = redis_server("redis least-privilege ACL without CONFIG") else {
        return;
    };
    let prefix = unique_store_name("lp");
    let (url, password) = server.grant("# acl: relaxed", &prefix);
    let err = open_storage(&url)
        .map(drop)
        .expect_err("settings unreadable");
    assert_eq!(err.kind(), OpenErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("durability=relaxed"), "{err}");
    assert!(!err.to_string().contains(&password), "{err}");
    let relaxed = set_param(&url, "durability", "relaxed");
    write_and_read_back(open_storage(&relaxed).expect("relaxed opens"));
    let mut conn = redis_session(&server.admin_url, &url, &password);
    assert_noperm(&mut conn, &["CONFIG", "GET", "requirepass"]);
}
