//! TLS for the client and the built-in endpoint: rustls (ring provider) driven directly over a
//! monoio socket, with no extra layer in between.
//!
//! Data flow: `http::conn` owns a [`TlsIo`] per HTTPS connection. Reads take ciphertext from the
//! socket into a reused buffer, hand it to rustls, and copy the plaintext out once into the
//! connection's read buffer (the clock is read when the socket read completes, as for plain
//! HTTP). Writes encrypt into a reused buffer that is sent as one write — which is also what lets
//! the engine send a due request with one non-blocking `send` over TLS, exactly as over TCP.
//!
//! Also here: the client and server configurations, readable categories for handshake failures
//! (`TLS: unknown issuer`, `TLS: name mismatch`, …), and the self-signed CA + server certificate
//! that `serve-mock --tls-self-signed` writes (rcgen).

use std::io::{self, BufRead, Write};
use std::ops::DerefMut;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ConnectionCommon, DigitallySignedStruct, RootCertStore,
    ServerConfig, SideData,
};

const CIPHER_BUF: usize = 32 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client's TLS settings: verified against webpki-roots plus any `--ca-cert`, or not at all
/// with `--insecure`. ALPN offers `http/1.1` only.
pub fn client_config(ca_cert: Option<&Path>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_cert {
            let certs = read_certs(path, "--ca-cert")?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    format!(
                        "--ca-cert '{}': not a usable CA certificate: {e}",
                        path.display()
                    )
                })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The built-in endpoint's TLS settings from a PEM certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key '{}': no PEM private key found: {e}",
            key.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} '{}': {e}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} '{}': invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} '{}': no PEM certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        ));
    }
    Ok(certs)
}

/// The files `serve-mock --tls-self-signed DIR` writes.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA certificate clients should trust (`--ca-cert`).
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Creates a fresh CA and a server certificate for `names` (DNS names or IP addresses) signed by
/// it, valid until `not_after` (year, month, day), and writes them into `dir`.
pub fn write_self_signed(
    dir: &Path,
    names: &[&str],
    not_after: (i32, u8, u8),
) -> Result<SelfSigned, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| format!("cannot create certificates: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create '{}': {e}", dir.display()))?;
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "qpsbench test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, &ca_key);
    let server_key = KeyPair::generate().map_err(err)?;
    let mut server =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(err)?;
    server.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    server.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(err)?;
    let out = SelfSigned {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
    };
    let write = |p: &Path, s: String| {
        std::fs::write(p, s).map_err(|e| format!("cannot write '{}': {e}", p.display()))
    };
    write(&out.ca_cert, ca_cert.pem())?;
    write(&out.server_cert, server_cert.pem())?;
    write(&out.server_key, server_key.serialize_pem())?;
    Ok(out)
}

/// The readable category of a TLS failure, without the `TLS: ` prefix.
pub fn category(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "unknown issuer".into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name mismatch".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "expired certificate".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not yet valid".into()
            }
            CertificateError::Revoked => "revoked certificate".into(),
            CertificateError::BadSignature => "bad certificate signature".into(),
            CertificateError::BadEncoding => "bad certificate encoding".into(),
            other => format!("invalid certificate ({})", words(&format!("{other:?}"))),
        },
        E::AlertReceived(alert) => format!("alert from server ({})", words(&format!("{alert:?}"))),
        E::NoApplicationProtocol => "no common ALPN protocol".into(),
        E::InvalidMessage(_) => "peer is not speaking TLS".into(),
        E::PeerIncompatible(p) => format!("incompatible peer ({})", words(&format!("{p:?}"))),
        other => format!("{other}"),
    }
}

/// A rustls variant's name (`HandshakeFailure`, `UnknownIssuer`) as words (`handshake
/// failure`): what a user reads, with no Rust syntax (the name's first token only, so a
/// variant's fields never show).
fn words(name: &str) -> String {
    let head: String = name.chars().take_while(|c| c.is_alphanumeric()).collect();
    let mut out = String::new();
    for (i, c) in head.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A TLS handshake or record failure.
#[derive(Debug)]
pub enum TlsError {
    Io(io::Error),
    Tls(rustls::Error),
}

/// A rustls connection driven over a monoio socket; one per HTTPS connection.
pub struct TlsIo<C> {
    pub conn: C,
    /// Ciphertext read from the socket, reused.
    rx: Vec<u8>,
    /// Ciphertext waiting to be sent, reused.
    tx: Vec<u8>,
    /// Plaintext that arrived with the last handshake messages (a client's first request often
    /// shares a read with its Finished message), handed out by the first `read_plain`.
    early: Vec<u8>,
    /// The peer sent close_notify or closed the socket.
    eof: bool,
}

impl<C, D> TlsIo<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            rx: Vec::with_capacity(CIPHER_BUF),
            tx: Vec::with_capacity(4096),
            early: Vec::new(),
            eof: false,
        }
    }

    /// Moves ciphertext rustls wants to send into `tx`.
    fn collect(&mut self) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(&mut self.tx).is_err() {
                break;
            }
        }
    }

    /// Sends all pending ciphertext.
    pub async fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        self.collect();
        if self.tx.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.tx);
        let (res, mut buf) = tcp.write_all(buf).await;
        buf.clear();
        self.tx = buf;
        res.map(|_| ())
    }

    /// Runs the handshake to completion.
    pub async fn handshake(&mut self, tcp: &mut TcpStream) -> Result<(), TlsError> {
        while self.conn.is_handshaking() {
            self.flush(tcp).await.map_err(TlsError::Io)?;
            if !self.conn.is_handshaking() {
                break;
            }
            if self.conn.wants_read() {
                if self.read_cipher(tcp).await.map_err(TlsError::Io)? == 0 {
                    return Err(TlsError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    )));
                }
                let mut early = std::mem::take(&mut self.early);
                let fed = self.feed(&mut early);
                self.early = early;
                fed?;
            }
        }
        self.flush(tcp).await.map_err(TlsError::Io)
    }

    async fn read_cipher(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.rx);
        buf.clear();
        let cap = buf.capacity();
        let (res, slice) = tcp.read(buf.slice_mut(0..cap)).await;
        self.rx = slice.into_inner();
        res
    }

    /// Hands the ciphertext in `rx` to rustls, moving plaintext into `dst` as it is decrypted
    /// (rustls refuses more ciphertext while its plaintext buffer is full).
    fn feed(&mut self, dst: &mut Vec<u8>) -> Result<(), TlsError> {
        let rx = std::mem::take(&mut self.rx);
        let mut slice = &rx[..];
        let result = loop {
            if slice.is_empty() {
                break Ok(());
            }
            if let Err(e) = self.conn.read_tls(&mut slice) {
                break Err(TlsError::Io(e));
            }
            if let Err(e) = self.conn.process_new_packets() {
                break Err(TlsError::Tls(e));
            }
            self.drain(dst);
        };
        self.rx = rx;
        result
    }

    /// Moves decrypted plaintext into `dst`; returns how much.
    fn drain(&mut self, dst: &mut Vec<u8>) -> usize {
        let mut total = 0;
        loop {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok([]) => {
                    self.eof = true;
                    return total;
                }
                Ok(data) => {
                    let n = data.len();
                    dst.extend_from_slice(data);
                    reader.consume(n);
                    total += n;
                }
                // WouldBlock: nothing buffered. UnexpectedEof: closed without close_notify.
                Err(e) => {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        self.eof = true;
                    }
                    return total;
                }
            }
        }
    }

    /// Reads until some plaintext was appended to `dst`; `Ok(0)` means the peer closed.
    pub async fn read_plain(
        &mut self,
        tcp: &mut TcpStream,
        dst: &mut Vec<u8>,
    ) -> io::Result<usize> {
        if !self.early.is_empty() {
            dst.extend_from_slice(&self.early);
            let n = self.early.len();
            self.early = Vec::new();
            return Ok(n);
        }
        loop {
            let got = self.drain(dst);
            if got > 0 {
                return Ok(got);
            }
            if self.eof {
                return Ok(0);
            }
            // rustls may owe the peer something (a key update, an alert) before reading on.
            self.flush(tcp).await?;
            let n = self.read_cipher(tcp).await?;
            if n == 0 {
                self.eof = true;
                return Ok(0);
            }
            let before = dst.len();
            match self.feed(dst) {
                Ok(()) => {}
                Err(TlsError::Io(e)) => return Err(e),
                Err(TlsError::Tls(e)) => {
                    return Err(io::Error::other(TlsRecordError(category(&e))))
                }
            }
            if dst.len() > before {
                return Ok(dst.len() - before);
            }
        }
    }

    /// The peer has sent close_notify (or closed the socket) as far as rustls has read.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Encrypts `plain` into the pending ciphertext (sent by the next flush or `send_now`).
    /// rustls holds at most 64 KiB of outgoing records, so a large request (a long prompt) is
    /// encrypted in pieces, each moved into the pending buffer before the next.
    pub fn encrypt(&mut self, mut plain: &[u8]) -> io::Result<()> {
        while !plain.is_empty() {
            let n = self.conn.writer().write(plain)?;
            self.collect();
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS refused plaintext",
                ));
            }
            plain = &plain[n..];
        }
        Ok(())
    }

    /// Sends as much pending ciphertext as the socket takes now (non-blocking); the rest stays
    /// pending for the next flush.
    pub fn send_now(&mut self, fd: i32) -> io::Result<()> {
        let n = super::sock::send_nonblocking(fd, &self.tx)?;
        self.tx.drain(..n);
        Ok(())
    }
}

/// A TLS failure after the handshake, carried inside an `io::Error`.
#[derive(Debug)]
pub struct TlsRecordError(pub String);

impl std::fmt::Display for TlsRecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsRecordError {}

/// The host name or IP address to verify, for SNI and certificate checks.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))
}

/// `--insecure`: accepts any certificate. Signatures are still checked so the handshake is a
/// real one; only the identity is not.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_files_load_into_configs() {
        let dir = std::env::temp_dir().join(format!("qpsbench-tls-{}", std::process::id()));
        let s = write_self_signed(&dir, &["localhost", "127.0.0.1", "::1"], (2099, 1, 1)).unwrap();
        assert!(std::fs::read_to_string(&s.ca_cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        server_config(&s.server_cert, &s.server_key).unwrap();
        client_config(Some(&s.ca_cert), false).unwrap();
        client_config(None, true).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "hello").unwrap();
        assert!(client_config(Some(&bad), false)
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(client_config(Some(&dir.join("missing.pem")), false)
            .unwrap_err()
            .contains("--ca-cert"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn categories_are_readable() {
        let c = |e| category(&rustls::Error::InvalidCertificate(e));
        assert_eq!(c(CertificateError::UnknownIssuer), "unknown issuer");
        assert_eq!(c(CertificateError::NotValidForName), "name mismatch");
        assert_eq!(c(CertificateError::Expired), "expired certificate");
    }
}
