//! sluice-rtp
