//! Graceful shutdown: a signal every long-lived task can wait on, and a count of
//! open connections that the process waits to drain.
//!
//! `main` calls [`Shutdown::begin`] on SIGTERM/SIGINT. The HTTP server stops
//! accepting, each WebSocket handler (holding a [`ConnectionGuard`]) sees
//! [`Shutdown::begun`] resolve and closes its socket, and `main` waits for
//! [`Shutdown::idle`] up to `shutdown.grace_period_ms`.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared shutdown state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    begun: Arc<watch::Sender<bool>>,
    open_connections: Arc<watch::Sender<usize>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            begun: Arc::new(watch::Sender::new(false)),
            open_connections: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Starts the shutdown; idempotent.
    pub fn begin(&self) {
        self.begun.send_replace(true);
    }

    pub fn is_begun(&self) -> bool {
        *self.begun.borrow()
    }

    /// Resolves once [`Shutdown::begin`] has been called (at once if it already was).
    pub async fn begun(&self) {
        let mut receiver = self.begun.subscribe();
        // The sender lives in `self`, so wait_for cannot fail while we borrow it.
        let _ = receiver.wait_for(|begun| *begun).await;
    }

    /// Counts one open connection until the guard is dropped.
    pub fn track(&self) -> ConnectionGuard {
        self.open_connections.send_modify(|open| *open += 1);
        ConnectionGuard {
            open_connections: Arc::clone(&self.open_connections),
        }
    }

    pub fn open_connections(&self) -> usize {
        *self.open_connections.borrow()
    }

    /// Resolves when no tracked connection is open.
    pub async fn idle(&self) {
        let mut receiver = self.open_connections.subscribe();
        let _ = receiver.wait_for(|open| *open == 0).await;
    }
}

/// Keeps a connection counted as open by [`Shutdown`] while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    open_connections: Arc<watch::Sender<usize>>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open_connections
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn begun_resolves_after_begin() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_begun());
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.begun().await }
        });
        shutdown.begin();
        waiter.await.unwrap();
        assert!(shutdown.is_begun());
        // Already begun: resolves at once.
        shutdown.begun().await;
    }

    #[tokio::test]
    async fn idle_waits_for_every_guard_to_drop() {
        let shutdown = Shutdown::new();
        let first = shutdown.track();
        let second = shutdown.track();
        assert_eq!(shutdown.open_connections(), 2);
        let idle = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.idle().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!idle.is_finished());
        drop(second);
        idle.await.unwrap();
        assert_eq!(shutdown.open_connections(), 0);
    }
}
