//! TLS for every byte Tandem serves.
//!
//! There is no plaintext listener that serves content: the HTTPS listener
//! speaks TLS 1.2 and 1.3 only (rustls, aws-lc-rs), and the optional HTTP
//! listener only redirects. Certificates are read from PEM files and reloaded
//! in place ([`reload`]) so that a renewed certificate takes effect without
//! dropping a session in progress. [`devcert`] makes a local CA for the demo
//! and the tests.

pub mod devcert;
pub(crate) mod reload;

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Why a certificate could not be put into service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error(
        "no TLS certificate at {path} ({key}). Tandem serves HTTPS only: put your PEM \
         certificate chain there (or point {key} at it), or run `tandem demo` to \
         generate a development certificate"
    )]
    Missing { path: String, key: &'static str },
    #[error("cannot read {path} ({key}): {source}")]
    Read {
        path: String,
        key: &'static str,
        source: io::Error,
    },
    #[error("{path} ({key}) holds no {what} in PEM form")]
    Empty {
        path: String,
        key: &'static str,
        what: &'static str,
    },
    #[error("the certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every TLS and signing use in Tandem shares.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the server configuration from PEM files: TLS 1.2 and 1.3 only
/// (1.3 only when `min_version` is "1.3"), HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn server_config(
    cert_file: &Path,
    key_file: &Path,
    min_version: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let versions: &[&rustls::SupportedProtocolVersion] = if min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_file(path: &Path, key: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| {
        let path = path.display().to_string();
        if source.kind() == io::ErrorKind::NotFound {
            TlsError::Missing { path, key }
        } else {
            TlsError::Read { path, key, source }
        }
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let key = "tls.cert_file";
    let pem = read_file(path, key)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            key,
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            key,
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = "tls.key_file";
    let pem = read_file(path, key)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            key,
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            path: path.display().to_string(),
            key,
            what: "private key",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_certificate_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = server_config(
            &dir.path().join("cert.pem"),
            &dir.path().join("key.pem"),
            "1.2",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tls.cert_file"), "{text}");
        assert!(text.contains("tandem demo"), "{text}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let certs_a = devcert::generate(a.path(), &["localhost".into()]).unwrap();
        let certs_b = devcert::generate(b.path(), &["localhost".into()]).unwrap();
        assert!(server_config(&certs_a.cert, &certs_a.key, "1.2").is_ok());
        assert!(server_config(&certs_a.cert, &certs_b.key, "1.2").is_err());
    }

    #[test]
    fn a_file_without_pem_content_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        fs::write(&cert, "not a certificate").unwrap();
        let err = server_config(&cert, &cert, "1.2").unwrap_err();
        assert!(matches!(err, TlsError::Empty { .. }), "{err}");
    }
}
