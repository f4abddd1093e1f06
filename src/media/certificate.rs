//! The server's DTLS certificate and engine configuration, from the `dtls.*` keys.

use std::sync::Arc;
use std::time::Duration;

use sluice_dtls::{Certificate, Config, DtlsVersion, NamedGroup, Recovery};

use crate::config::{DtlsConfig, DtlsGroupSetting, DtlsVersionSetting};
use crate::media::MediaError;

/// Initial timeout used when `dtls.recovery` is false: the fixed 1 s timer of a naive
/// engine, so that comparisons measure what recovery brings.
const NO_RECOVERY_RTO: Duration = Duration::from_secs(1);

/// Loads `dtls.certificate`/`dtls.private_key`, or generates a fresh ECDSA P-256
/// self-signed certificate when neither is set (browsers pin it by its SDP
/// fingerprint, so nothing is gained by a CA-signed one).
pub fn load_or_generate(config: &DtlsConfig) -> Result<Arc<Certificate>, MediaError> {
    match (&config.certificate, &config.private_key) {
        (None, None) => Ok(Arc::new(Certificate::generate()?)),
        (Some(cert_path), Some(key_path)) => {
            let read = |path: &std::path::PathBuf| {
                std::fs::read_to_string(path).map_err(|source| MediaError::ReadPem {
                    path: path.clone(),
                    source,
                })
            };
            let cert_pem = read(cert_path)?;
            let key_pem = read(key_path)?;
            Ok(Arc::new(Certificate::from_pem(&cert_pem, &key_pem)?))
        }
        _ => Err(MediaError::HalfCertificate),
    }
}

/// The engine configuration every session of the process shares.
pub fn engine_config(config: &DtlsConfig, certificate: Arc<Certificate>) -> Config {
    let mut engine = Config::new(certificate);
    engine.max_datagram_size = config.max_datagram_size;
    engine.initial_rto = config.initial_rto();
    engine.max_rto = config.max_rto().max(engine.initial_rto);
    engine.handshake_timeout = config.handshake_timeout();
    engine.hello_verify = config.hello_verify;
    engine.max_handshake_buffer = config.max_handshake_buffer_bytes;
    engine.versions = config
        .versions
        .iter()
        .map(|v| match v {
            DtlsVersionSetting::Dtls12 => DtlsVersion::Dtls12,
            DtlsVersionSetting::Dtls13 => DtlsVersion::Dtls13,
        })
        .collect();
    engine.groups = config
        .groups
        .iter()
        .map(|g| match g {
            DtlsGroupSetting::X25519mlkem768 => NamedGroup::X25519MlKem768,
            DtlsGroupSetting::X25519 => NamedGroup::X25519,
            DtlsGroupSetting::P256 => NamedGroup::P256,
        })
        .collect();
    if !config.recovery {
        engine.recovery = Recovery::NONE;
        engine.initial_rto = NO_RECOVERY_RTO;
        engine.max_rto = NO_RECOVERY_RTO;
    }
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_off_means_a_fixed_one_second_timer() {
        let dtls = DtlsConfig {
            recovery: false,
            ..DtlsConfig::default()
        };
        let cert = Arc::new(Certificate::generate().unwrap());
        let engine = engine_config(&dtls, cert);
        assert_eq!(engine.recovery, Recovery::NONE);
        assert_eq!(engine.initial_rto, Duration::from_secs(1));
    }

    #[test]
    fn dtls_keys_map_onto_the_engine() {
        let dtls = DtlsConfig {
            max_datagram_size: 600,
            initial_rto_ms: 100,
            ..DtlsConfig::default()
        };
        let cert = Arc::new(Certificate::generate().unwrap());
        let engine = engine_config(&dtls, cert);
        assert_eq!(engine.max_datagram_size, 600);
        assert_eq!(engine.initial_rto, Duration::from_millis(100));
        assert_eq!(engine.recovery, Recovery::FULL);
        assert_eq!(engine.versions, [DtlsVersion::Dtls13, DtlsVersion::Dtls12]);
        assert_eq!(
            engine.groups,
            [
                NamedGroup::X25519MlKem768,
                NamedGroup::X25519,
                NamedGroup::P256
            ]
        );
        let only12 = DtlsConfig {
            versions: vec![DtlsVersionSetting::Dtls12],
            ..DtlsConfig::default()
        };
        let engine = engine_config(&only12, Arc::new(Certificate::generate().unwrap()));
        assert_eq!(engine.versions, [DtlsVersion::Dtls12]);
    }

    #[test]
    fn a_lone_certificate_path_is_refused() {
        let dtls = DtlsConfig {
            certificate: Some("/nonexistent.pem".into()),
            ..DtlsConfig::default()
        };
        assert!(matches!(
            load_or_generate(&dtls),
            Err(MediaError::HalfCertificate)
        ));
    }
}
