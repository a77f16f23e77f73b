//! The TLS connector for the URL's `sslmode`: rustls (on ring) through `tokio-postgres-rustls`,
//! with the certificate checks each mode asks for. `verify-full` is rustls's own verifier;
//! `verify-ca` is that verifier less the host name check (as libpq: any certificate the CA
//! signed); `require` without a CA file checks nothing but the handshake's signatures (as
//! libpq: it encrypts, and trusts the network not to impersonate the server).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url::{Tls, TlsMode};
use crate::storage::tls::{load_certs, load_key, provider, root_store};

/// The connector every session of the store uses. With `sslmode=disable` the client never
/// calls it (its config says `Disable`), so it is built with no trust anchor at all.
pub(super) fn connector(tls: &Tls) -> anyhow::Result<MakeRustlsConnect> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, &tls.root_cert) {
        (TlsMode::Disable, _) => {
            // Trusts nothing, should a connection ever try.
            let roots = rustls::RootCertStore::empty();
            return finish(tls, builder.with_root_certificates(roots));
        }
        (TlsMode::Require, None) => {
            tracing::warn!(
                "PostgreSQL sslmode=require without sslrootcert encrypts but does not check \
                 the server's certificate: use verify-full to be safe from impersonation"
            );
            Arc::new(CheckSignaturesOnly(Arc::clone(&provider)))
        }
        (mode, root_cert) => {
            let roots = Arc::new(root_store(root_cert.as_deref())?);
            let full = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()?;
            if mode == TlsMode::VerifyFull {
                full
            } else {
                // verify-ca, or require with a CA file (libpq checks the chain then too).
                Arc::new(AnyHostName(full))
            }
        }
    };
    finish(
        tls,
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier),
    )
}

/// Adds the client certificate, when the URL gives one.
fn finish(
    tls: &Tls,
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
) -> anyhow::Result<MakeRustlsConnect> {
    let config = match &tls.client_cert {
        Some((cert, key)) => {
            let chain = load_certs("client certificate", cert)?;
            let key = load_key(key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                crate::storage::OpenError::marked(
                    crate::storage::OpenErrorKind::Refused,
                    format!(
                        "the client certificate {} and key do not make a pair: {e}",
                        cert.display()
                    ),
                )
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `verify-ca`: the chain must lead to a trusted CA, any host name will do.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // The verifier checks the name only after the chain: this error means the chain
            // is trusted.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `sslmode=require` without a CA file: libpq's meaning, encryption without authentication.
/// The handshake's signatures are still checked against the presented certificate.
#[derive(Debug)]
struct CheckSignaturesOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for CheckSignaturesOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
