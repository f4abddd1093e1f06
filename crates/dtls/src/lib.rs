//! sluice-dtls
