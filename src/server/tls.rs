//! TLS on `tls-port`, with rustls: `tls-cert-file` and `tls-key-file` for the server,
//! `tls-ca-cert-file` and `tls-auth-clients` for client certificates, `tls-protocols`.
//! After the handshake a connection is handed to the ordinary connection task through a
//! socket pair, so every command path is the same for TLS and plain clients.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::net::{TcpListener, UnixStream};
use tokio_rustls::TlsAcceptor;

use super::stream::Peer;
use super::{Server, connection};
use crate::config::{self, Config};

/// A client that does not finish its handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The content type of the record a TLS client's first message comes in.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS settings as a rustls acceptor, or Redis-like words for what is wrong.
pub fn acceptor(config: &Config) -> Result<TlsAcceptor, String> {
    let cert_file = config.text(config::TLS_CERT_FILE);
    let key_file = config.text(config::TLS_KEY_FILE);
    if cert_file.is_empty() || key_file.is_empty() {
        return Err("Failed to configure TLS: tls-cert-file and tls-key-file are required".into());
    }
    let certs = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("Failed to load certificate: {cert_file}: {e}"))?;
    let key = load_private_key(&key_file, &config.text(config::TLS_KEY_FILE_PASS))
        .map_err(|e| format!("Failed to load private key: {key_file}: {e}"))?;
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(&config.text(config::TLS_PROTOCOLS))?)
        .map_err(|e| format!("Failed to configure TLS: {e}"))?;
    let auth = config.text(config::TLS_AUTH_CLIENTS);
    let builder = if auth == "no" {
        builder.with_no_client_auth()
    } else {
        let ca_file = config.text(config::TLS_CA_CERT_FILE);
        if ca_file.is_empty() {
            return Err(
                "Failed to configure TLS: tls-ca-cert-file is required to authenticate \
                        clients (or set tls-auth-clients no)"
                    .into(),
            );
        }
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca_file)
            .map_err(|e| format!("Failed to load CA certificate(s) file: {ca_file}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("Failed to load CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("Failed to load CA certificate: {e}"))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let verifier = if auth == "optional" {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        builder.with_client_cert_verifier(
            verifier
                .build()
                .map_err(|e| format!("Failed to configure TLS: {e}"))?,
        )
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("Failed to load private key: {key_file}: {e}"))?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        // webpki cannot parse X.509 v1 certificates (what `openssl x509 -req` makes without
        // extensions), which OpenSSL, and so Redis, accept: such a certificate is served as is.
        Ok(()) | Err(rustls::Error::InvalidCertificate(_)) => {}
        Err(e) => return Err(format!("Failed to configure TLS: {e}")),
    }
    let server_config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    Ok(TlsAcceptor::from(Arc::new(server_config)))
}

/// The key in `path`; an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`, what `openssl rsa
/// -aes256` writes) is decrypted with `tls-key-file-pass`.
fn load_private_key(path: &str, pass: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    match pkcs8::der::pem::decode_vec(&pem) {
        Ok(("ENCRYPTED PRIVATE KEY", der)) => {
            if pass.is_empty() {
                return Err("the key is encrypted and tls-key-file-pass is not set".into());
            }
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
                .map_err(|e| e.to_string())?;
            let key = info.decrypt(pass).map_err(|e| e.to_string())?;
            Ok(PrivateKeyDer::Pkcs8(key.as_bytes().to_vec().into()))
        }
        _ => PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string()),
    }
}

/// `tls-protocols`: "TLSv1.2 TLSv1.3" (both when empty). rustls has no older versions.
fn protocol_versions(
    setting: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    if setting.trim().is_empty() {
        return Ok(rustls::ALL_VERSIONS.to_vec());
    }
    setting
        .split_whitespace()
        .map(|name| match name.to_ascii_lowercase().as_str() {
            "tlsv1.2" => Ok(&rustls::version::TLS12),
            "tlsv1.3" => Ok(&rustls::version::TLS13),
            _ => Err(format!(
                "Failed to configure TLS: unsupported protocol '{name}'"
            )),
        })
        .collect()
}

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, addr)) => {
                let _ = tcp.set_nodelay(true);
                let peer = Peer::tcp(&tcp, addr);
                let current = server.tls.read().unwrap_or_else(|e| e.into_inner()).clone();
                let Some(acceptor) = current else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let handshake = crate::timer::timeout(HANDSHAKE_TIMEOUT, async move {
                        // A plain-text client is closed without a word, as OpenSSL does; rustls
                        // would send an alert that the client reads as a garbled reply.
                        let mut first = [0u8; 1];
                        if tcp.peek(&mut first).await? == 0 || first[0] != TLS_HANDSHAKE_RECORD {
                            // Read what came, so the close is an orderly one, not a reset.
                            let _ = tcp.try_read(&mut [0; 1024]);
                            return Err(std::io::Error::other("not a TLS handshake"));
                        }
                        acceptor.accept(tcp).await
                    });
                    let mut tls = match handshake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!("Error accepting a client connection: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                    let Ok((inner, mut outer)) = UnixStream::pair() else {
                        return;
                    };
                    tokio::spawn(connection::serve(server, inner, peer));
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outer).await;
                });
            }
            Err(e) => {
                tracing::warn!("Accepting client connection: {e}");
                crate::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
