//! The store's URL: its own parameters (`prefix`, the timeouts, `pool_size`, `durability`),
//! their defaults and limits, and what is left for the Redis client. Apart from the rest
//! because it is pure (no server, so its tests need none) and because it is where the password
//! passes through: its messages never echo the URL.

use std::time::Duration;

const DEFAULT_PREFIX: &str = "ckpt";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5_000);
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(10_000);
const DEFAULT_POOL_SIZE: u32 = 8;
const MAX_POOL_SIZE: u32 = 1_024;
const MAX_PREFIX_LEN: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Durability {
    Strict,
    Relaxed,
}

/// What `open` takes from the URL: our parameters, and the URL left for the client.
pub(super) struct Settings {
    pub(super) client_url: String,
    pub(super) prefix: String,
    pub(super) connect_timeout: Duration,
    pub(super) io_timeout: Duration,
    pub(super) pool_size: u32,
    pub(super) durability: Durability,
}

pub(super) fn parse_url(url: &str) -> anyhow::Result<Settings> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("a Redis URL starts with redis://"))?;
    match scheme {
        "redis" => {}
        "rediss" => anyhow::bail!(
            "rediss:// (Redis over TLS) is not supported: this build's Redis client has no TLS \
             support; use redis:// on a trusted network or through a TLS tunnel"
        ),
        other => anyhow::bail!("{other}:// is not a Redis URL (expected redis://)"),
    }
    anyhow::ensure!(
        !url.contains('#'),
        "a Redis URL has no #fragment (put options in ?param=value)"
    );
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut settings = Settings {
        client_url: base.to_owned(),
        prefix: DEFAULT_PREFIX.to_owned(),
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        io_timeout: DEFAULT_IO_TIMEOUT,
        pool_size: DEFAULT_POOL_SIZE,
        durability: Durability::Strict,
    };
    let mut passed = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "prefix" => {
                anyhow::ensure!(
                    !value.is_empty()
                        && value.len() <= MAX_PREFIX_LEN
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)),
                    "prefix={value:?}: a prefix is 1 to {MAX_PREFIX_LEN} of A-Z a-z 0-9 _ . : -"
                );
                value.clone_into(&mut settings.prefix);
            }
            "connect_timeout_ms" => settings.connect_timeout = millis(name, value)?,
            "io_timeout_ms" => settings.io_timeout = millis(name, value)?,
            "pool_size" => {
                settings.pool_size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| {
                        anyhow::anyhow!("pool_size={value:?}: expected 1 to {MAX_POOL_SIZE}")
                    })?;
            }
            "durability" => {
                settings.durability = match value {
                    "strict" => Durability::Strict,
                    "relaxed" => Durability::Relaxed,
                    _ => anyhow::bail!("durability={value:?}: expected strict or relaxed"),
                }
            }
            // The client's own parameter.
            "protocol" => passed.push(pair),
            _ => anyhow::bail!(
                "unknown Redis URL parameter {name:?} (known: prefix, connect_timeout_ms, \
                 io_timeout_ms, pool_size, durability, protocol)"
            ),
        }
    }
    if !passed.is_empty() {
        settings.client_url = format!("{base}?{}", passed.join("&"));
    }
    Ok(settings)
}

fn millis(name: &str, value: &str) -> anyhow::Result<Duration> {
    value
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| anyhow::anyhow!("{name}={value:?}: expected a positive number of ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_ours_and_stripped_before_the_client_sees_them() {
        let s = parse_url(
            "redis://u:secret@h:7000/2?prefix=p-1&connect_timeout_ms=250&io_timeout_ms=900\
             &pool_size=3&durability=relaxed&protocol=resp3",
        )
        .expect("valid URL");
        assert_eq!(s.client_url, "redis://u:secret@h:7000/2?protocol=resp3");
        assert_eq!(s.prefix, "p-1");
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert_eq!(s.io_timeout, Duration::from_millis(900));
        assert_eq!(s.pool_size, 3);
        assert_eq!(s.durability, Durability::Relaxed);

        let d = parse_url("redis://h/").expect("valid URL");
        assert_eq!(d.client_url, "redis://h/");
        assert_eq!(d.prefix, DEFAULT_PREFIX);
        assert_eq!(d.durability, Durability::Strict);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for (url, says) in [
            ("rediss://u:secret@h/", "TLS"),
            ("redis://u:secret@h/?prefix=a{b}", "prefix"),
            ("redis://u:secret@h/?prefix=", "prefix"),
            ("redis://u:secret@h/?pool_size=0", "pool_size"),
            ("redis://u:secret@h/?io_timeout_ms=0", "io_timeout_ms"),
            ("redis://u:secret@h/?durability=maybe", "durability"),
            ("redis://u:secret@h/?prefx=a", "unknown"),
            ("redis://u:secret@h/#frag", "fragment"),
            ("http://u:secret@h/", "not a Redis URL"),
        ] {
            let err = parse_url(url).err().map(|e| format!("{e:#}"));
            let err = err.unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }
}
