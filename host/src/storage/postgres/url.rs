//! The store's URL: which parameters are the store's own (`schema`, the timeouts, `pool_size`),
//! their defaults and limits, and the client config built from the rest. It is apart from the
//! connection code because it is pure (no server, no I/O), and because it is where the password
//! passes through: its messages show the URL only through `redact_url`, and `describe_target`
//! makes the password-free name of the server that every later message uses.

use std::time::Duration;

use anyhow::Context as _;

use super::session::describe;
use crate::storage::redact_url;

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
