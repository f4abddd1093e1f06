//! The bounded table of validated remote addresses and their consent deadlines.
//!
//! RFC 7675: a lite agent grants consent to an address for as long as it keeps receiving
//! valid checks from it. Each entry is one 5-tuple (our local address and theirs, UDP).

use std::net::SocketAddr;
use std::time::Instant;

/// A remote address that passed a connectivity check, and until when it may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValidatedPath {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) consent_expires_at: Instant,
}

/// What `Paths::refresh` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// The address was already validated; its deadline moved.
    Refreshed,
    /// The address is new; `evicted` was forgotten to make room.
    Added { evicted: Option<SocketAddr> },
}

/// At most `capacity` validated paths, keyed by remote address.
#[derive(Debug)]
pub(crate) struct Paths {
    entries: Vec<ValidatedPath>,
    capacity: usize,
}

impl Paths {
    pub(crate) fn new(capacity: usize) -> Paths {
        Paths {
            entries: Vec::with_capacity(capacity),
            capacity,
        }
    }

    pub(crate) fn get(&self, remote: SocketAddr) -> Option<&ValidatedPath> {
        self.entries.iter().find(|p| p.remote == remote)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Records a valid check from `remote` received on `local`. When the table is full,
    /// forgets the path whose consent expires first, sparing `protected` (the nominated
    /// address) unless it is the only candidate.
    pub(crate) fn refresh(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        consent_expires_at: Instant,
        protected: Option<SocketAddr>,
    ) -> Refresh {
        if let Some(path) = self.entries.iter_mut().find(|p| p.remote == remote) {
            path.local = local;
            path.consent_expires_at = consent_expires_at;
            return Refresh::Refreshed;
        }
        let mut evicted = None;
        if self.entries.len() >= self.capacity {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, p)| Some(p.remote) != protected)
                .min_by_key(|(_, p)| p.consent_expires_at)
                .or_else(|| {
                    self.entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, p)| p.consent_expires_at)
                })
                .map(|(index, _)| index);
            if let Some(index) = victim {
                evicted = Some(self.entries.swap_remove(index).remote);
            }
        }
        if self.entries.len() < self.capacity {
            self.entries.push(ValidatedPath {
                local,
                remote,
                consent_expires_at,
            });
        }
        Refresh::Added { evicted }
    }

    /// Removes every path whose consent has expired at `now`, reporting each.
    pub(crate) fn expire(&mut self, now: Instant, mut expired: impl FnMut(SocketAddr)) {
        self.entries.retain(|p| {
            let fresh = p.consent_expires_at > now;
            if !fresh {
                expired(p.remote);
            }
            fresh
        });
    }

    /// The earliest consent deadline.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().map(|p| p.consent_expires_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn full_table_evicts_earliest_expiry_unless_protected() {
        let t0 = Instant::now();
        let mut paths = Paths::new(2);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            paths.refresh(addr(0), addr(1), at(1), None),
            Refresh::Added { evicted: None }
        );
        assert_eq!(
            paths.refresh(addr(0), addr(2), at(2), None),
            Refresh::Added { evicted: None }
        );
        assert_eq!(
            paths.refresh(addr(0), addr(3), at(3), Some(addr(1))),
            Refresh::Added {
                evicted: Some(addr(2))
            }
        );
        assert_eq!(
            paths.refresh(addr(0), addr(4), at(4), None),
            Refresh::Added {
                evicted: Some(addr(1))
            }
        );
        assert_eq!(paths.len(), 2);
    }

    #[test]
    fn single_slot_table_replaces_even_the_protected_path() {
        let t0 = Instant::now();
        let mut paths = Paths::new(1);
        paths.refresh(addr(0), addr(1), t0, Some(addr(1)));
        assert_eq!(
            paths.refresh(addr(0), addr(2), t0, Some(addr(1))),
            Refresh::Added {
                evicted: Some(addr(1))
            }
        );
        assert!(paths.get(addr(2)).is_some());
    }

    #[test]
    fn expire_removes_exactly_the_paths_due() {
        let t0 = Instant::now();
        let mut paths = Paths::new(4);
        paths.refresh(addr(0), addr(1), t0 + Duration::from_secs(1), None);
        paths.refresh(addr(0), addr(2), t0 + Duration::from_secs(2), None);
        let mut expired = Vec::new();
        paths.expire(t0 + Duration::from_secs(1), |a| expired.push(a));
        assert_eq!(expired, vec![addr(1)]);
        assert_eq!(paths.next_expiry(), Some(t0 + Duration::from_secs(2)));
    }
}
