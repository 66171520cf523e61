//! rustls server configuration from the user's files: certificate chain, key (encrypted
//! PKCS#8 too), minimum protocol, client CA, CRLs, ALPN. Errors name the option at fault.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pkcs8::der::Decode;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

#[derive(Clone, Debug, pyo3::FromPyObject)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub key_password: Option<String>,
    pub min_tls13: bool,
    pub ca: Option<PathBuf>,
    pub crls: Vec<PathBuf>,
    pub client_verify: bool,
    /// The protocols offered (not a Python setting: it follows the HTTP mode).
    #[pyo3(default)]
    pub alpn: Vec<Vec<u8>>,
}

impl TlsSettings {
    /// These settings offering the protocols `alpn`.
    pub fn with_alpn(&self, alpn: Vec<Vec<u8>>) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone(),
            key_password: self.key_password.clone(),
            min_tls13: self.min_tls13,
            ca: self.ca.clone(),
            crls: self.crls.clone(),
            client_verify: self.client_verify,
            alpn,
        }
    }
}

fn read(option: &str, path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{option}: cannot read {}: {e}", path.display()))
}

fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(option, path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{option}: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{option}: no certificate found in {}", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    const OPTION: &str = "--ssl-keyfile";
    let pem = read(OPTION, path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let password = password.ok_or_else(|| {
            format!(
                "{OPTION}: {} is encrypted: give its password with --ssl-keyfile-password",
                path.display()
            )
        })?;
        let (_, der) = pkcs8::der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| format!("{OPTION}: {} is not a valid encrypted key: {e}", path.display()))?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
            .map_err(|e| format!("{OPTION}: {} is not a valid encrypted key: {e}", path.display()))?;
        let decrypted = encrypted
            .decrypt(password)
            .map_err(|_| format!("--ssl-keyfile-password: wrong password for {}", path.display()))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            decrypted.as_bytes().to_vec(),
        )));
    }
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{OPTION}: {} is not valid PEM: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "{OPTION}: no private key (PKCS#8, PKCS#1 or SEC1) found in {}",
                path.display()
            )
        })
}

fn revocation_lists(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let mut crls = Vec::new();
    for path in paths {
        let pem = read("--ssl-crl", path)?;
        let found = rustls_pemfile::crls(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--ssl-crl: {} is not valid PEM: {e}", path.display()))?;
        if found.is_empty() {
            return Err(format!("--ssl-crl: no CRL found in {}", path.display()));
        }
        crls.extend(found);
    }
    Ok(crls)
}

/// The server's order of cipher suites. Clients (OpenSSL among them) list AES-256 first, whose
/// SHA-384 key schedule runs on *ring*'s portable SHA-512 code on AMD processors; AES-128 with
/// SHA-256 uses the SHA instructions (server CPU per new connection on an AMD EPYC: 447 -> 357 us).
/// It is the suite TLS 1.3 requires every implementation to offer.
fn preferred_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: preferred_suites(),
        ..rustls::crypto::ring::default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.min_tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let certs = certificates("--ssl-certificate", &settings.cert)?;
    let key = private_key(&settings.key, settings.key_password.as_deref())?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("--ssl-protocol-min: {e}"))?;
    let builder = match &settings.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("--ssl-ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ssl-ca: invalid CA certificate in {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(revocation_lists(&settings.crls)?);
            let verifier = if settings.client_verify {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| format!("--ssl-ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if settings.client_verify => return Err("--ssl-client-verify: needs --ssl-ca".into()),
        None if !settings.crls.is_empty() => return Err("--ssl-crl: needs --ssl-ca".into()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--ssl-keyfile: the key in {} does not fit the certificate in {}: {e}",
            settings.key.display(),
            settings.cert.display()
        )
    })?;
    config.alpn_protocols = settings.alpn.clone();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// What one TLS connection negotiated, for the scopes that report it (ASGI `tls`).
pub struct TlsInfo {
    pub server_cert: Arc<str>,
    pub version: u16,
    /// None over QUIC: quinn does not tell which suite was agreed.
    pub cipher_suite: Option<u16>,
    pub client_chain: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    pub fn from_connection(conn: &rustls::ServerConnection, server_cert: Arc<str>) -> Self {
        Self {
            server_cert,
            version: conn.protocol_version().map(u16::from).unwrap_or(0),
            cipher_suite: conn.negotiated_cipher_suite().map(|c| u16::from(c.suite())),
            client_chain: conn
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }

    /// A QUIC connection's: always TLS 1.3.
    pub fn for_quic(server_cert: Arc<str>, client_chain: Vec<CertificateDer<'static>>) -> Self {
        Self {
            server_cert,
            version: u16::from(rustls::ProtocolVersion::TLSv1_3),
            cipher_suite: None,
            client_chain,
        }
    }

    /// The client certificate's subject as an RFC 4514 string.
    pub fn client_name(&self) -> Option<String> {
        let first = self.client_chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
        Some(cert.subject().to_string())
    }
}

/// DER to PEM, as ASGI's `tls` extension wants certificates.
pub fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The server's own (leaf) certificate in PEM.
pub fn server_cert_pem(settings: &TlsSettings) -> Result<String, String> {
    let certs = certificates("--ssl-certificate", &settings.cert)?;
    Ok(certs.first().map(|c| pem(c.as_ref())).unwrap_or_default())
}
