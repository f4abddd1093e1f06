//! sluice-netsim
