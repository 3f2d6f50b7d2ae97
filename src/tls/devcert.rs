//! A development certificate authority and a server certificate signed by it.
//!
//! `tandem demo` and the integration tests need real TLS without a public CA.
//! A self-signed leaf would teach people to click through warnings; a local
//! CA that the user trusts once (or that a test client trusts alone) keeps
//! certificate verification on everywhere.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::private_file;

/// Where the generated files are.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate to trust (browser, curl `--cacert`).
    pub ca_cert: PathBuf,
    /// The server certificate chain for `tls.cert_file`.
    pub cert: PathBuf,
    /// The server key for `tls.key_file`.
    pub key: PathBuf,
    /// True when this call created them, false when they were reused.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("cannot write development certificates to {dir}: {source}")]
    Io { dir: String, source: io::Error },
    #[error("cannot generate development certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join("dev-ca.pem"),
        dir.join("dev-ca-key.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Reuses the certificates in `dir` when they are all there, otherwise
/// generates a new CA and server certificate for `hosts`.
pub(crate) fn ensure(dir: &Path, hosts: &[String]) -> Result<DevCerts, DevCertError> {
    let (ca_cert, ca_key, cert, key) = paths(dir);
    if [&ca_cert, &ca_key, &cert, &key].iter().all(|p| p.exists()) {
        return Ok(DevCerts {
            ca_cert,
            cert,
            key,
            created: false,
        });
    }
    generate(dir, hosts)
}

/// Generates a new CA and a server certificate for `hosts` (DNS names or IP
/// addresses) in `dir`, replacing what is there.
pub fn generate(dir: &Path, hosts: &[String]) -> Result<DevCerts, DevCertError> {
    let io_err = |source| DevCertError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let (ca_cert_path, ca_key_path, cert_path, key_path) = paths(dir);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tandem development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut leaf_params = CertificateParams::new(hosts.to_vec())?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, hosts.first().map_or("localhost", |h| h));
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    fs::create_dir_all(dir).map_err(io_err)?;
    private_file::write(&ca_key_path, issuer.key().serialize_pem().as_bytes()).map_err(io_err)?;
    private_file::write(&key_path, leaf_key.serialize_pem().as_bytes()).map_err(io_err)?;
    fs::write(&ca_cert_path, ca_cert.pem()).map_err(io_err)?;
    fs::write(&cert_path, leaf.pem()).map_err(io_err)?;
    Ok(DevCerts {
        ca_cert: ca_cert_path,
        cert: cert_path,
        key: key_path,
        created: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_reuses_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
        let first = ensure(dir.path(), &hosts).unwrap();
        assert!(first.created);
        let ca = fs::read(&first.ca_cert).unwrap();
        let second = ensure(dir.path(), &hosts).unwrap();
        assert!(!second.created);
        assert_eq!(fs::read(&second.ca_cert).unwrap(), ca);
    }

    #[test]
    fn keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(dir.path(), &["localhost".into()]).unwrap();
        assert!(!private_file::is_exposed(&certs.key).unwrap());
        assert!(!private_file::is_exposed(&dir.path().join("dev-ca-key.pem")).unwrap());
    }
}
