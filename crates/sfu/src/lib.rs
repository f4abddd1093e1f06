//! sluice-sfu
