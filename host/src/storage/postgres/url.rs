//! The store's URL: which parameters are the store's own (`schema`, the timeouts, `pool_size`,
//! TLS and password files), their defaults and limits, and the client config built from the
//! rest. It is apart from the
//! connection code because it is pure (no server, no I/O), and because it is where the password
//! passes through: its messages show the URL only through `redact_url`, and `describe_target`
//! makes the password-free name of the server that every later message uses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::session::describe;
use crate::storage::{percent_decode, redact_url};

/// The PostgreSQL schema that holds the store when the URL names none.
const DEFAULT_SCHEMA: &str = "checkpoint";
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_POOL_SIZE: u32 = 4;
/// Above this, a pool would exhaust a default server (`max_connections = 100`) by itself.
const MAX_POOL_SIZE: u32 = 64;

/// What the URL says, split into the client's config and the store's own settings.
pub(super) struct Settings {
    pub(super) config: postgres::Config,
    pub(super) schema: String,
    pub(super) connect_timeout: Duration,
    pub(super) statement_timeout: Duration,
    pub(super) pool_size: u32,
    pub(super) tls: Tls,
    /// `password_file=`: a file that holds the password (read at open, not here: this is pure).
    pub(super) password_file: Option<PathBuf>,
    /// `passfile=`: libpq's password file (`host:port:db:user:password` lines), which
    /// `PGPASSFILE` or `~/.pgpass` name otherwise.
    pub(super) passfile: Option<PathBuf>,
}

/// libpq's `sslmode`, less the two that fall back to plain text without asking
/// (`allow`, `prefer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// Plain TCP.
    Disable,
    /// Encrypted, the certificate unchecked (libpq's meaning), unless `sslrootcert` is given:
    /// then as `VerifyCa`.
    Require,
    /// Encrypted, the certificate signed by a trusted CA, any host name.
    VerifyCa,
    /// Encrypted, the certificate signed by a trusted CA and valid for the host name.
    VerifyFull,
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        })
    }
}

/// The URL's TLS parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Tls {
    pub(super) mode: TlsMode,
    /// `sslrootcert`: the CA file; `None` (or `system`) is the system's trust store.
    pub(super) root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`: the client certificate and its key, given together.
    pub(super) client_cert: Option<(PathBuf, PathBuf)>,
}

/// Splits the store's own params off `url` and builds the client's config from the rest.
pub(super) fn parse_url(url: &str) -> anyhow::Result<Settings> {
    let shown = redact_url(url);
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "PostgreSQL URL {shown:?} must start with postgres:// or postgresql://"
    );
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA.to_owned();
    let mut connect_timeout_ms = None;
    let mut statement_timeout_ms = DEFAULT_STATEMENT_TIMEOUT_MS;
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut passed = Vec::new();
    let mut given = Vec::new();
    let mut sslmode = None;
    let (mut root_cert, mut client_cert, mut client_key) = (None::<String>, None, None);
    let (mut password_file, mut passfile) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || -> anyhow::Result<u64> {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && *n <= u64::from(u32::MAX))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "PostgreSQL URL {shown:?}: `{key}` must be a positive whole number, not {value:?}"
                    )
                })
        };
        match key {
            "schema" => {
                check_schema_name(value)
                    .with_context(|| format!("PostgreSQL URL {shown:?}: bad `schema`"))?;
                value.clone_into(&mut schema);
            }
            "connect_timeout_ms" => connect_timeout_ms = Some(number()?),
            "statement_timeout_ms" => statement_timeout_ms = number()?,
            "pool_size" => {
                let size = number()?;
                anyhow::ensure!(
                    size <= u64::from(MAX_POOL_SIZE),
                    "PostgreSQL URL {shown:?}: `pool_size` must be at most {MAX_POOL_SIZE}, not {size}"
                );
                pool_size = u32::try_from(size)?;
            }
            "sslmode" => {
                sslmode = Some(match value {
                    "disable" => TlsMode::Disable,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    "allow" | "prefer" => anyhow::bail!(
                        "PostgreSQL URL {shown:?}: sslmode={value} falls back to plain text \
                         without telling; use verify-full (or disable on a trusted network)"
                    ),
                    _ => anyhow::bail!(
                        "PostgreSQL URL {shown:?}: sslmode={value:?} is not one of disable, \
                         require, verify-ca, verify-full"
                    ),
                });
            }
            "sslrootcert" | "sslcert" | "sslkey" | "password_file" | "passfile" => {
                let path = percent_decode(key, value)
                    .with_context(|| format!("PostgreSQL URL {shown:?}"))?;
                anyhow::ensure!(
                    !path.is_empty(),
                    "PostgreSQL URL {shown:?}: `{key}` names no file"
                );
                match key {
                    "sslrootcert" => root_cert = Some(path),
                    "sslcert" => client_cert = Some(PathBuf::from(path)),
                    "sslkey" => client_key = Some(PathBuf::from(path)),
                    "password_file" => password_file = Some(PathBuf::from(path)),
                    _ => passfile = Some(PathBuf::from(path)),
                }
            }
            _ => {
                given.push(key.to_owned());
                passed.push(pair);
            }
        }
    }
    let rest = if passed.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed.join("&"))
    };
    let mut config: postgres::Config = rest
        .parse()
        .map_err(|e| anyhow::anyhow!("PostgreSQL URL {shown:?} is invalid: {}", describe(&e)))?;
    let gave = |name: &str| given.iter().any(|g| g == name);
    let tls = resolve_tls(&shown, sslmode, root_cert, client_cert, client_key)?;
    // The store decides, not the client's default (`prefer`, which would try TLS and fall back
    // to plain text without telling).
    config.ssl_mode(match tls.mode {
        TlsMode::Disable => postgres::config::SslMode::Disable,
        _ => postgres::config::SslMode::Require,
    });
    anyhow::ensure!(
        password_file.is_none() || config.get_password().is_none(),
        "PostgreSQL URL {shown:?} gives a password and a `password_file`: give it once"
    );
    // libpq's own `connect_timeout` (seconds) counts when `connect_timeout_ms` is not given.
    let connect_timeout = match (connect_timeout_ms, config.get_connect_timeout()) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, Some(given)) if gave("connect_timeout") && !given.is_zero() => *given,
        (None, _) => Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
    };
    let statement_timeout = Duration::from_millis(statement_timeout_ms);
    config.connect_timeout(connect_timeout);
    // Startup options outrank role and database settings, and come after the URL's own
    // `options`, so these two always hold for this store's sessions.
    let options = format!(
        "{} -c synchronous_commit=on -c statement_timeout={statement_timeout_ms}",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_start());
    if config.get_application_name().is_none() {
        config.application_name("ckpt");
    }
    if !gave("keepalives_idle") {
        config.keepalives_idle(Duration::from_secs(5));
    }
    if !gave("keepalives_interval") {
        config.keepalives_interval(Duration::from_secs(1));
    }
    if !gave("keepalives_retries") {
        config.keepalives_retries(5);
    }
    if !gave("tcp_user_timeout") {
        config.tcp_user_timeout(statement_timeout + connect_timeout);
    }
    Ok(Settings {
        config,
        schema,
        connect_timeout,
        statement_timeout,
        pool_size,
        tls,
        password_file,
        passfile,
    })
}

/// The TLS settings the parameters add up to: `verify-full` when any certificate parameter
/// asks for TLS without naming a mode, plain TCP when none does.
fn resolve_tls(
    shown: &str,
    mode: Option<TlsMode>,
    root_cert: Option<String>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
) -> anyhow::Result<Tls> {
    let asked = root_cert.is_some() || client_cert.is_some() || client_key.is_some();
    let mode = mode.unwrap_or(if asked {
        TlsMode::VerifyFull
    } else {
        TlsMode::Disable
    });
    anyhow::ensure!(
        !(mode == TlsMode::Disable && asked),
        "PostgreSQL URL {shown:?}: sslmode=disable with sslrootcert, sslcert or sslkey; \
         remove them or ask for TLS (sslmode=verify-full)"
    );
    let client_cert = match (client_cert, client_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => anyhow::bail!(
            "PostgreSQL URL {shown:?}: a client certificate needs both sslcert and sslkey"
        ),
    };
    // libpq's `sslrootcert=system` names the system's trust store, which is also the default.
    let root_cert = root_cert.filter(|path| path != "system").map(PathBuf::from);
    Ok(Tls {
        mode,
        root_cert,
        client_cert,
    })
}

/// Schema names are spliced into SQL text (identifiers cannot be bound), so only a plain,
/// lowercase identifier is accepted: it needs no quoting rules and means the same everywhere.
fn check_schema_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        first_ok && rest_ok && name.len() <= 63,
        "{name:?} is not a schema name: use 1 to 63 lowercase ASCII letters, digits and `_`, \
         starting with a letter or `_`"
    );
    anyhow::ensure!(
        !name.starts_with("pg_"),
        "schema names starting with `pg_` are reserved by PostgreSQL"
    );
    Ok(())
}

/// "PostgreSQL at HOST:PORT (database D, schema S)": what messages name, never the password.
pub(super) fn describe_target(config: &postgres::Config, schema: &str) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                postgres::config::Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "(no host given)".to_owned()
    } else {
        hosts.join(",")
    };
    format!(
        "PostgreSQL at {hosts} (database {}, schema {schema})",
        config.get_dbname().unwrap_or("(default)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_of(params: &str) -> anyhow::Result<Tls> {
        parse_url(&format!("postgres://u:s3cret@h:5/db?{params}")).map(|s| s.tls)
    }

    #[test]
    fn tls_is_verify_full_once_asked_for_and_off_otherwise() {
        assert_eq!(tls_of("").expect("plain").mode, TlsMode::Disable);
        let tls = tls_of("sslrootcert=/ca%20dir/ca.pem").expect("TLS");
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca dir/ca.pem")));
        assert_eq!(tls_of("sslmode=verify-full").expect("TLS").root_cert, None);
        let tls = tls_of("sslmode=verify-ca&sslrootcert=system&sslcert=/c.pem&sslkey=/k.pem")
            .expect("TLS");
        assert_eq!(tls.mode, TlsMode::VerifyCa);
        assert_eq!(tls.root_cert, None);
        assert_eq!(
            tls.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(
            tls_of("sslmode=require").expect("TLS").mode,
            TlsMode::Require
        );
        let settings = parse_url("postgres://u@h/db?sslmode=require").expect("valid");
        assert_eq!(
            settings.config.get_ssl_mode(),
            postgres::config::SslMode::Require
        );
        let settings = parse_url("postgres://u@h/db").expect("valid");
        assert_eq!(
            settings.config.get_ssl_mode(),
            postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn contradictory_or_silently_downgrading_tls_parameters_are_refused() {
        for (params, says) in [
            ("sslmode=prefer", "falls back to plain text"),
            ("sslmode=allow", "falls back to plain text"),
            ("sslmode=verify", "not one of"),
            (
                "sslmode=disable&sslrootcert=/ca.pem",
                "sslmode=disable with",
            ),
            ("sslcert=/c.pem", "both sslcert and sslkey"),
            ("sslkey=/k.pem", "both sslcert and sslkey"),
            ("sslrootcert=", "names no file"),
            ("password_file=/pw%zz", "%-escape"),
            ("password_file=/pw", "give it once"),
            ("password=other&password_file=/pw", "give it once"),
        ] {
            let err = tls_of(params).map(drop).expect_err(params);
            let text = format!("{err:#}");
            assert!(text.contains(says), "{params}: {text}");
            assert!(!text.contains("s3cret"), "{params}: {text}");
            assert!(!text.contains("other"), "{params}: {text}");
        }
    }

    #[test]
    fn password_files_are_the_stores_own_parameters() {
        let settings =
            parse_url("postgres://u@h/db?password_file=/run/pw&passfile=/home/u/.pgpass")
                .expect("valid");
        assert_eq!(settings.password_file, Some(PathBuf::from("/run/pw")));
        assert_eq!(settings.passfile, Some(PathBuf::from("/home/u/.pgpass")));
        assert_eq!(settings.config.get_password(), None);
    }
}
