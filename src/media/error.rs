//! Errors of the media plane (start-up only: per-packet problems are drops, counted).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the media plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A worker's UDP socket could not be bound.
    #[error("cannot bind media worker {worker} on {addr}: {source}")]
    Bind {
        worker: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start media worker {worker}: {source}")]
    Spawn {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
    /// The configured certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadPem {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The certificate could not be generated or parsed.
    #[error("DTLS certificate: {0}")]
    Certificate(#[from] sluice_dtls::CertificateError),
    /// Only one of dtls.certificate and dtls.private_key is set.
    #[error("dtls.certificate and dtls.private_key must be set together")]
    HalfCertificate,
}
