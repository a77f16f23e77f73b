//! What the network stores share about TLS and secrets: reading password files, CA, certificate
//! and key files (refusing secrets that other users may read), the rustls crypto provider, and
//! turning a TLS failure deep in a client's error chain into a sentence that names the reason.
//!
//! rustls on ring: no system OpenSSL (headers or library) is needed to build or run the stores.
//! Every message here names files by path and never shows their contents.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::CertificateError;
#[cfg(feature = "postgres")]
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
#[cfg(feature = "postgres")]
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;

use super::{OpenError, OpenErrorKind};

/// The crypto provider of every TLS connection the stores make: ring, named explicitly, so a
/// process whose other crates enable a second provider still gets a working config.
#[cfg(feature = "postgres")]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A local file the store cannot use (missing, unreadable, not PEM, readable by others): the
/// operator fixes the path or the file, so `Refused`.
fn refused(message: String) -> anyhow::Error {
    OpenError::marked(OpenErrorKind::Refused, message)
}

/// Refuses a secret (password or private key) file that every user of the machine may read:
/// a secret is only as private as its file. Group access is allowed, for files that a
/// deployment tool shares with the service's group (0640, as PostgreSQL allows for keys).
#[cfg(unix)]
fn check_private(what: &str, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| refused(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(refused(format!(
            "the {what} {} can be read by every user (mode {mode:04o}): restrict it, e.g. \
             chmod 600",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_what: &str, _path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Reads a file that holds one password (`password_file=`): its whole content less one
/// trailing line break. Refuses a missing, empty or world-readable file.
pub(crate) fn read_password_file(path: &Path) -> anyhow::Result<String> {
    check_private("password file", path)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        refused(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    let password = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if password.is_empty() {
        return Err(refused(format!(
            "the password file {} is empty",
            path.display()
        )));
    }
    Ok(password.to_owned())
}

/// The bytes of a PEM file (`what` names it in messages); a private key must not be
/// world-readable.
pub(crate) fn read_pem(what: &str, path: &Path, private: bool) -> anyhow::Result<Vec<u8>> {
    if private {
        check_private(what, path)?;
    }
    std::fs::read(path)
        .map_err(|e| refused(format!("cannot read the {what} {}: {e}", path.display())))
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn load_certs(what: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(what, path, false)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refused(format!("the {what} {} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(refused(format!(
            "the {what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
#[cfg(feature = "postgres")]
pub(crate) fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_pem("client key", path, true)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        refused(format!(
            "the client key {} holds no usable private key: {e}",
            path.display()
        ))
    })
}

/// The trust anchors: the certificates of `ca_file`, or the system's trust store when `None`.
#[cfg(feature = "postgres")]
pub(crate) fn root_store(ca_file: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs("CA file", path)? {
                roots.add(cert).map_err(|e| {
                    refused(format!(
                        "the CA file {} holds a certificate that cannot be a trust anchor: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs_load()?;
            let (added, _ignored) = roots.add_parsable_certificates(found);
            if added == 0 {
                return Err(refused(
                    "no CA file given and the system's trust store has no certificate: give \
                     the server's CA file"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(roots)
}

#[cfg(feature = "postgres")]
fn rustls_native_certs_load() -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty()
        && let Some(e) = found.errors.first()
    {
        return Err(refused(format!(
            "no CA file given and the system's trust store cannot be read: {e}"
        )));
    }
    Ok(found.certs)
}

/// The TLS failure somewhere in `error`'s chain, as a sentence that names the reason (the
/// caller names the server): an untrusted or expired certificate, a host name the certificate
/// does not cover, a client certificate the server refused, a handshake with a peer that does
/// not speak TLS. `None` when the chain holds no TLS error.
pub(crate) fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    find_rustls_error(error).map(describe)
}

fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = as_rustls_error(e) {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Looks through the wrappers clients put around a rustls error: `io::Error` (whose `source`
/// skips the error it wraps) and the `Arc` the Redis client keeps its causes in.
fn as_rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(found) = e.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.get_ref().and_then(|inner| as_rustls_error(inner));
    }
    if let Some(shared) = e.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
        return as_rustls_error(&**shared);
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA (certificate verify \
                 failed: unknown issuer); give the CA that signed it"
                    .to_owned()
            }
            CertificateError::NotValidForName => {
                "the server's certificate is not valid for this host name (certificate verify \
                 failed: wrong host name)"
                    .to_owned()
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "the server's certificate is not valid for the host name {} (certificate verify \
                 failed: wrong host name; it names {})",
                expected.to_str(),
                presented.join(", ")
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired (certificate verify failed)".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (certificate verify failed)".to_owned()
            }
            CertificateError::Revoked => {
                "the server's certificate is revoked (certificate verify failed)".to_owned()
            }
            other => format!(
                "the server's certificate is invalid (certificate verify failed: {other:?})"
            ),
        },
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied),
        ) => format!(
            "the server did not accept a client certificate from this client (TLS alert \
             {alert:?}): give a client certificate and key that the server's CA signed"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the TLS handshake failed ({e}): does the server speak TLS on this port?")
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_through_io_and_shared_wrappers() {
        let bad = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, bad);
        let text = tls_failure(&io).expect("found inside io::Error");
        assert!(text.contains("not signed by a trusted CA"), "{text}");
        let shared: Arc<dyn StdError + Send + Sync> = Arc::new(io);
        let text = tls_failure(&shared).expect("found inside an Arc");
        assert!(text.contains("unknown issuer"), "{text}");
        let plain = std::io::Error::other("connection refused");
        assert_eq!(tls_failure(&plain), None);
    }

    #[test]
    fn password_files_lose_one_line_break_and_must_be_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret:with spaces \n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
            assert_eq!(
                read_password_file(&path).expect("private file"),
                "s3cret:with spaces "
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = format!(
                "{:#}",
                read_password_file(&path).expect_err("world-readable")
            );
            assert!(err.contains("every user"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        std::fs::write(&path, "\r\n").expect("write");
        let err = format!("{:#}", read_password_file(&path).expect_err("empty"));
        assert!(err.contains("empty"), "{err}");
        let err = format!(
            "{:#}",
            read_password_file(&dir.path().join("missing")).expect_err("missing")
        );
        assert!(err.contains("missing"), "{err}");
    }
}
