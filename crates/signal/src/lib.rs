//! sluice-signal
