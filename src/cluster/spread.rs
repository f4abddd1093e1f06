//! Rooms that outgrow their node: which worker of which other node takes the next
//! participant of a room owned here ([`RemotePlacement`] for the room registry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::cluster::media_control::RemoteWorkers;
use crate::cluster::Cluster;
use crate::media::WorkerHandle;
use crate::signaling::rooms::RemotePlacement;

/// Spreads onto the least loaded other node once this one holds
/// `cluster.room_spread_participants`, its workers taken in turn.
#[derive(Debug)]
pub struct Spread {
    cluster: Arc<Cluster>,
    remote: RemoteWorkers,
    next: AtomicUsize,
    /// One handle (one command queue) per worker of another node.
    handles: Mutex<HashMap<(String, u16), WorkerHandle>>,
}

impl Spread {
    /// Spreading for `cluster`'s node over the control links of `remote`.
    pub fn new(cluster: Arc<Cluster>, remote: RemoteWorkers) -> Self {
        Self {
            cluster,
            remote,
            next: AtomicUsize::new(0),
            handles: Mutex::new(HashMap::new()),
        }
    }
}

impl RemotePlacement for Spread {
    fn remote_worker(&self, participants_here: usize) -> Option<WorkerHandle> {
        let target = self.cluster.spread_target(participants_here)?;
        let count = target.workers.len();
        if count == 0 {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let worker = u16::try_from(index).ok()?;
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        let key = (target.id.clone(), worker);
        if let Some(handle) = handles.get(&key).filter(|h| !h.commands.is_closed()) {
            return Some(handle.clone());
        }
        let candidates = target.workers.get(index)?.clone();
        let fingerprint = target
            .fingerprint
            .as_deref()
            .and_then(sluice_dtls::Fingerprint::parse)?;
        let handle = self.remote.handle(
            &target.id,
            &target.internal_url,
            worker,
            candidates,
            fingerprint,
        )?;
        tracing::info!(node = %target.id, worker, alias = handle.index, "rooms spread onto another node's worker");
        handles.insert(key, handle.clone());
        Some(handle)
    }
}
