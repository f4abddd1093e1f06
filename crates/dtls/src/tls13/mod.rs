//! DTLS 1.3 (RFC 9147): the key schedule and record protection, the messages that differ
//! from 1.2, and the handshake engine that takes over once 1.3 is negotiated.

pub(crate) mod conn;
pub(crate) mod keys;
pub(crate) mod messages;
pub(crate) mod record;
