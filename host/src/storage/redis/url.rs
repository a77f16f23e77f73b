//! The store's URL: its own parameters (`prefix`, the timeouts, `pool_size`, `durability`, the
//! TLS files, `password_file`), their defaults and limits, and what is left for the Redis
//! client. Apart from the rest
//! because it is pure (no server, so its tests need none) and because it is where the password
//! passes through: its messages never echo the URL.

use std::path::PathBuf;
use std::time::Duration;

use crate::storage::percent_decode;

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
    /// `rediss://`: TLS, with these files (read at open, not here: this is pure).
    pub(super) tls: Option<TlsFiles>,
    /// `password_file=`: a file that holds the password.
    pub(super) password_file: Option<PathBuf>,
}

/// The TLS parameters of a `rediss://` URL. The server's certificate is always checked: signed
/// by a trusted CA and valid for the URL's host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TlsFiles {
    /// `tls_ca_file`: the CA(s) to trust; `None` is the system's trust store.
    pub(super) ca_file: Option<PathBuf>,
    /// `tls_cert_file` and `tls_key_file`: the client certificate and its key, together.
    pub(super) client: Option<(PathBuf, PathBuf)>,
}

pub(super) fn parse_url(url: &str) -> anyhow::Result<Settings> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("a Redis URL starts with redis://"))?;
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        other => anyhow::bail!("{other}:// is not a Redis URL (expected redis:// or rediss://)"),
    };
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
        tls: None,
        password_file: None,
    };
    let (mut ca_file, mut cert_file, mut key_file) = (None, None, None);
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
            "tls_ca_file" | "tls_cert_file" | "tls_key_file" | "password_file" => {
                let path = PathBuf::from(percent_decode(name, value)?);
                anyhow::ensure!(!value.is_empty(), "{name}: names no file");
                match name {
                    "tls_ca_file" => ca_file = Some(path),
                    "tls_cert_file" => cert_file = Some(path),
                    "tls_key_file" => key_file = Some(path),
                    _ => settings.password_file = Some(path),
                }
            }
            // The client's own parameter.
            "protocol" => passed.push(pair),
            _ => anyhow::bail!(
                "unknown Redis URL parameter {name:?} (known: prefix, connect_timeout_ms, \
                 io_timeout_ms, pool_size, durability, tls_ca_file, tls_cert_file, \
                 tls_key_file, password_file, protocol)"
            ),
        }
    }
    let client = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => anyhow::bail!("a client certificate needs both tls_cert_file and tls_key_file"),
    };
    if tls {
        settings.tls = Some(TlsFiles { ca_file, client });
    } else {
        anyhow::ensure!(
            ca_file.is_none() && client.is_none(),
            "tls_ca_file, tls_cert_file and tls_key_file need TLS: use rediss://"
        );
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
        assert_eq!(d.tls, None);
        assert_eq!(d.password_file, None);
    }

    #[test]
    fn rediss_urls_take_their_tls_files_and_a_password_file() {
        let s = parse_url(
            "rediss://app@h:6380/0?tls_ca_file=/ca%20dir/ca.pem&tls_cert_file=/c.pem\
             &tls_key_file=/k.pem&password_file=/run/pw",
        )
        .expect("valid URL");
        assert_eq!(s.client_url, "rediss://app@h:6380/0");
        assert_eq!(
            s.tls,
            Some(TlsFiles {
                ca_file: Some(PathBuf::from("/ca dir/ca.pem")),
                client: Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem"))),
            })
        );
        assert_eq!(s.password_file, Some(PathBuf::from("/run/pw")));
        // TLS with the system's trust store and no client certificate.
        let s = parse_url("rediss://h/").expect("valid URL");
        assert_eq!(s.tls, Some(TlsFiles::default()));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for (url, says) in [
            ("redis://u:secret@h/?tls_ca_file=/ca.pem", "rediss://"),
            ("rediss://u:secret@h/?tls_cert_file=/c.pem", "both"),
            ("rediss://u:secret@h/?tls_key_file=/k.pem", "both"),
            ("rediss://u:secret@h/?tls_ca_file=", "names no file"),
            ("rediss://u:secret@h/?password_file=%4", "%-escape"),
            ("redis://u:secret@h/#insecure", "fragment"),
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
