//! TLS to PostgreSQL: rustls (the HTTP client's TLS already) under the `postgres` client, with
//! libpq's `sslmode` meanings — `disable`/`allow` plaintext; `prefer` TLS when the server offers it,
//! unverified; `require` TLS, unverified; `verify-ca` TLS and a certificate chained to a trusted
//! root; `verify-full` that and the certificate naming the host in the URL. Trusted roots are the
//! PEM file `sslrootcert` names, else the system's.
//!
//! The glue between the two crates (the client's `MakeTlsConnect` over a `tokio-rustls` stream) is
//! a few lines here rather than another crate, which would bring a second crypto library.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::config::SslMode;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a URL's `sslmode` asks of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    /// The mode `sslmode=…` names; absent, plaintext (as before TLS was built, and as the tests'
    /// clusters speak).
    pub fn parse(mode: Option<&str>) -> Result<TlsMode, String> {
        Ok(match mode {
            None | Some("disable" | "allow") => TlsMode::Disable,
            Some("prefer") => TlsMode::Prefer,
            Some("require") => TlsMode::Require,
            Some("verify-ca") => TlsMode::VerifyCa,
            Some("verify-full") => TlsMode::VerifyFull,
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    /// The client library's own setting: whether TLS is tried and whether it is required.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    fn verifies_chain(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

/// The TLS side of a target: built once, cloned into every connection.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Tls {
    /// The client configuration `mode` needs, trusting the certificates in `root_file` (PEM) or,
    /// without one, the system's. `None` for plaintext.
    pub fn new(mode: TlsMode, root_file: Option<&Path>) -> Result<Option<Tls>, String> {
        if mode == TlsMode::Disable {
            return Ok(None);
        }
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?;
        let chain = if mode.verifies_chain() {
            let roots = Arc::new(roots(root_file)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("TLS cannot be set up: {e}"))?;
            Some(webpki)
        } else {
            None
        };
        let verifier = Verifier {
            chain,
            any_name: mode == TlsMode::VerifyCa,
            provider,
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Some(Tls {
            config: Arc::new(config),
        }))
    }
}

/// The trusted roots: every certificate in `file`, or the system's store.
fn roots(file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(match file {
            Some(path) => format!(
                "sslrootcert {} holds no certificate to trust",
                path.display()
            ),
            None => "this system trusts no certificate authority to verify the server with; name one with sslrootcert=/path/to/root.crt".into(),
        });
    }
    Ok(roots)
}

/// `sslrootcert` from the URL, as a path.
pub fn root_file(value: Option<&str>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// What the server's certificate must be, by mode: `verify-full`, chained to a trusted root
/// (`chain`) and naming the host; `verify-ca`, chained, any name (libpq's meaning: a server
/// reached by an address its certificate does not list is trusted if a trusted authority signed
/// it); `require` and `prefer`, anything (encrypted against a listener, not an impostor). The
/// handshake's signatures are verified in every mode.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    any_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.any_name => Ok(ServerCertVerified::assertion()),
            verdict => verdict,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One connection's TLS: the configuration and the server's name.
pub struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl MakeTlsConnect<Socket> for Tls {
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: self.config.clone(),
            name,
        })
    }
}

impl TlsConnect<Socket> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, socket).await.map(Stream) })
    }
}

/// A TLS connection to the server.
pub struct Stream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for Stream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding is optional; without it the password exchange is as strong as
        // over plaintext, and the TLS session protects it.
        ChannelBinding::none()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_takes_libpqs_names_only() {
        assert_eq!(TlsMode::parse(None), Ok(TlsMode::Disable));
        assert_eq!(TlsMode::parse(Some("allow")), Ok(TlsMode::Disable));
        assert_eq!(TlsMode::parse(Some("verify-full")), Ok(TlsMode::VerifyFull));
        assert!(TlsMode::parse(Some("verify_full")).is_err());
        assert!(matches!(TlsMode::VerifyCa.ssl_mode(), SslMode::Require));
    }

    #[test]
    fn a_root_file_without_a_certificate_is_one_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.crt");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = Tls::new(TlsMode::VerifyFull, Some(&path)).unwrap_err();
        assert!(
            e.contains("root.crt") && e.contains("no certificate"),
            "{e}"
        );
        let e = Tls::new(TlsMode::VerifyFull, Some(&dir.path().join("missing.crt"))).unwrap_err();
        assert!(e.contains("missing.crt"), "{e}");
        assert!(Tls::new(TlsMode::Require, None).unwrap().is_some());
        assert!(Tls::new(TlsMode::Disable, None).unwrap().is_none());
    }
}
