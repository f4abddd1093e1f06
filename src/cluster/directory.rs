//! The workers of other nodes, as this node numbers them.
//!
//! A room that spans nodes has members on workers of several nodes. This node's rooms
//! and workers address every worker by one index: its own workers are `0..local`, and
//! each worker of another node that any of its rooms uses gets the next free index (an
//! *alias*) the first time it is named. Relay frames and room spans carry workers as
//! `(node, index on that node)`; each node translates them through its own directory.

use std::sync::{Arc, Mutex, MutexGuard};

/// Most workers of other nodes one node addresses (nodes x workers per node).
pub const MAX_REMOTE_WORKERS: usize = 4096;

/// A worker anywhere in the cluster: its node and its index there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct GlobalWorker {
    /// The node's `cluster.node_id`.
    pub node: String,
    /// The worker's index on that node.
    pub index: u16,
}

/// Aliases of other nodes' workers.
#[derive(Debug)]
pub struct WorkerDirectory {
    node: String,
    local: usize,
    remote: Vec<GlobalWorker>,
}

impl WorkerDirectory {
    /// The directory of node `node`, which runs `local` workers.
    pub fn new(node: impl Into<String>, local: usize) -> Self {
        Self {
            node: node.into(),
            local,
            remote: Vec::new(),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many workers this node runs.
    pub fn local_count(&self) -> usize {
        self.local
    }

    /// The index of `worker` here: its own index for one of this node's workers (if it
    /// exists), its alias otherwise (allocated on first use; `None` once
    /// [`MAX_REMOTE_WORKERS`] are known).
    pub fn index_of(&mut self, worker: &GlobalWorker) -> Option<usize> {
        if worker.node == self.node {
            let index = usize::from(worker.index);
            return (index < self.local).then_some(index);
        }
        if let Some(position) = self.remote.iter().position(|w| w == worker) {
            return Some(self.local + position);
        }
        if self.remote.len() >= MAX_REMOTE_WORKERS {
            return None;
        }
        self.remote.push(worker.clone());
        Some(self.local + self.remote.len() - 1)
    }

    /// The worker an index names.
    pub fn worker(&self, index: usize) -> Option<GlobalWorker> {
        if index < self.local {
            return Some(GlobalWorker {
                node: self.node.clone(),
                index: u16::try_from(index).ok()?,
            });
        }
        self.remote.get(index - self.local).cloned()
    }
}

/// The directory shared by the rooms, the relay and the control links.
#[derive(Debug, Clone)]
pub struct SharedDirectory(Arc<Mutex<WorkerDirectory>>);

impl SharedDirectory {
    /// Shares `directory`.
    pub fn new(directory: WorkerDirectory) -> Self {
        Self(Arc::new(Mutex::new(directory)))
    }

    /// The directory, locked for a lookup.
    pub fn lock(&self) -> MutexGuard<'_, WorkerDirectory> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(node: &str, index: u16) -> GlobalWorker {
        GlobalWorker {
            node: node.into(),
            index,
        }
    }

    #[test]
    fn own_workers_keep_their_index_and_others_get_stable_aliases() {
        let mut directory = WorkerDirectory::new("a", 2);
        assert_eq!(directory.index_of(&worker("a", 1)), Some(1));
        assert_eq!(directory.index_of(&worker("a", 2)), None, "no such worker");
        assert_eq!(directory.index_of(&worker("b", 0)), Some(2));
        assert_eq!(directory.index_of(&worker("c", 0)), Some(3));
        assert_eq!(directory.index_of(&worker("b", 0)), Some(2));
        assert_eq!(directory.worker(3), Some(worker("c", 0)));
        assert_eq!(directory.worker(0), Some(worker("a", 0)));
        assert_eq!(directory.worker(9), None);
    }

    #[test]
    fn aliases_are_bounded() {
        let mut directory = WorkerDirectory::new("a", 1);
        for n in 0..MAX_REMOTE_WORKERS {
            assert!(directory.index_of(&worker("b", n as u16)).is_some());
        }
        assert_eq!(directory.index_of(&worker("c", 0)), None);
        assert_eq!(directory.index_of(&worker("b", 5)), Some(6));
    }
}
