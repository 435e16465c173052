//! The cluster's own PKI, generated fresh for every cluster and written under `DIR/pki`:
//!
//! - `serving-ca.crt`: the CA clients trust; it signs `serving.crt`/`serving.key`, valid for
//!   `localhost` and `127.0.0.1` only, which the API server and the scheduler serve with.
//! - `client-ca.crt`/`client-ca.key`: the API server's `--client-ca-file`. Client certificates
//!   it signs authenticate as user = CN, groups = O, the API server's x509 rule. The key stays on
//!   disk so that identities can be minted later for a running cluster (`ClusterAccess`).
//! - `sa-signer.key`/`sa-signer.pub`: the service-account token signing key (API server and
//!   controller manager) and its public half (the API server verifies tokens with it).
//!
//! The serving CA's key is never written: nothing signs with it after start-up. All keys are
//! ECDSA P-256, the files are readable by their owner only.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::error::{ClusterError, Result};

/// The client CA's subject. The CA's certificate is never parsed back: an issuer is rebuilt from
/// this subject and the stored key, which is all signing needs (the authority key identifier is
/// derived from the key).
const CLIENT_CA_CN: &str = "stowage test cluster client CA";
const SERVING_CA_CN: &str = "stowage test cluster serving CA";

/// Paths of the PKI files of one cluster directory.
#[derive(Debug, Clone)]
pub(crate) struct PkiFiles {
    pub serving_ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub client_ca_cert: PathBuf,
    pub client_ca_key: PathBuf,
    pub sa_signer_key: PathBuf,
    pub sa_signer_pub: PathBuf,
}

impl PkiFiles {
    pub fn in_dir(dir: &Path) -> Self {
        PkiFiles {
            serving_ca_cert: dir.join("serving-ca.crt"),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            client_ca_cert: dir.join("client-ca.crt"),
            client_ca_key: dir.join("client-ca.key"),
            sa_signer_key: dir.join("sa-signer.key"),
            sa_signer_pub: dir.join("sa-signer.pub"),
        }
    }

    /// Generates every key and certificate and writes them.
    pub fn generate(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
        let files = PkiFiles::in_dir(dir);

        let serving_ca_key = KeyPair::generate()?;
        let serving_ca_params = ca_params(SERVING_CA_CN);
        let serving_ca_cert = serving_ca_params.self_signed(&serving_ca_key)?;
        let serving_ca = Issuer::new(serving_ca_params, serving_ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec!["localhost".to_string()])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        serving.distinguished_name = name("stowage test cluster API server", &[]);
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &serving_ca)?;

        let client_ca_key = KeyPair::generate()?;
        let client_ca_cert = ca_params(CLIENT_CA_CN).self_signed(&client_ca_key)?;

        let sa_signer = KeyPair::generate()?;

        write(&files.serving_ca_cert, &serving_ca_cert.pem())?;
        write(&files.serving_cert, &serving_cert.pem())?;
        write(&files.serving_key, &serving_key.serialize_pem())?;
        write(&files.client_ca_cert, &client_ca_cert.pem())?;
        write(&files.client_ca_key, &client_ca_key.serialize_pem())?;
        write(&files.sa_signer_key, &sa_signer.serialize_pem())?;
        write(&files.sa_signer_pub, &sa_signer.public_key_pem())?;
        Ok(files)
    }

    /// A client certificate and key (PEM) for `user` in `groups`, signed by the client CA.
    ///
    /// At most two groups: rcgen keeps one value per attribute type in a subject, so the first
    /// group is the subject's O and the second an O spelled as its raw OID (2.5.4.10); the API
    /// server reads both as groups.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        if groups.len() > 2 {
            return Err(ClusterError::TooManyGroups(groups.len()));
        }
        let ca_key_pem = fs::read_to_string(&self.client_ca_key).map_err(|e| {
            ClusterError::io(format!("reading {}", self.client_ca_key.display()), e)
        })?;
        let ca = Issuer::new(ca_params(CLIENT_CA_CN), KeyPair::from_pem(&ca_key_pem)?);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(user, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn name(cn: &str, groups: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(first) = groups.first() {
        dn.push(DnType::OrganizationName, *first);
    }
    if let Some(second) = groups.get(1) {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *second);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// Writes a file readable by its owner only.
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ClusterError::io(format!("creating {}", path.display()), e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))
}
