//! sluice-ice
