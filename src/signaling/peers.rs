//! What one connection remembers of the other members of its room.
//!
//! Every connection of a room keeps one entry per other member, so a room of n costs
//! n x (n - 1) entries: they hold only what the connection's decisions need (what the
//! member publishes, its mute flags), 16 bytes each in one vector sorted by id. Names and
//! the protocol's `ParticipantInfo` are taken from the room when a message needs them
//! (the join, a resync) instead of being copied into every connection.

use sluice_signal::protocol::{ParticipantInfo, Source, TrackInfo};

use crate::media::ParticipantId;
use crate::signaling::rooms::{track_info, Peer, Published};

/// Another member as this connection last told its client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerState {
    /// What it publishes: only these tracks get m-lines in this connection's offers.
    pub published: Published,
    /// Its microphone is off.
    pub audio_muted: bool,
    /// Its camera is off.
    pub video_muted: bool,
}

impl PeerState {
    /// The state of `peer` as the room announced it.
    pub fn of(peer: &Peer) -> Self {
        Self {
            published: peer.published,
            audio_muted: peer.info.audio_muted,
            video_muted: peer.info.video_muted,
        }
    }

    /// The protocol's description of its `source` track (mute state included).
    pub fn track(&self, id: ParticipantId, source: Source) -> TrackInfo {
        let info = ParticipantInfo {
            audio_muted: self.audio_muted,
            video_muted: self.video_muted,
            ..ParticipantInfo::new(String::new(), String::new())
        };
        track_info(id, source, &info)
    }
}

/// The other members of the room, sorted by id. Ids grow with each join, so a new
/// member is appended; a departure moves the entries after it.
#[derive(Debug, Default)]
pub struct PeerTable {
    entries: Vec<(ParticipantId, PeerState)>,
}

impl PeerTable {
    fn position(&self, id: ParticipantId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id.0, |(k, _)| k.0)
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: ParticipantId) -> bool {
        self.position(id).is_ok()
    }

    /// The state of `id`.
    pub fn get(&self, id: ParticipantId) -> Option<&PeerState> {
        let index = self.position(id).ok()?;
        self.entries.get(index).map(|(_, state)| state)
    }

    /// The state of `id`, to update.
    pub fn get_mut(&mut self, id: ParticipantId) -> Option<&mut PeerState> {
        let index = self.position(id).ok()?;
        self.entries.get_mut(index).map(|(_, state)| state)
    }

    /// Sets the state of `id`, returning the one it replaces.
    pub fn insert(&mut self, id: ParticipantId, state: PeerState) -> Option<PeerState> {
        match self.position(id) {
            Ok(index) => self
                .entries
                .get_mut(index)
                .map(|(_, old)| std::mem::replace(old, state)),
            Err(index) => {
                self.entries.insert(index, (id, state));
                None
            }
        }
    }

    /// Forgets `id`, returning its last state. Gives memory back once the room has
    /// shrunk to under a quarter of what it held.
    pub fn remove(&mut self, id: ParticipantId) -> Option<PeerState> {
        let index = self.position(id).ok()?;
        let (_, state) = self.entries.remove(index);
        if self.entries.capacity() > 4 * self.entries.len() + 16 {
            self.entries.shrink_to(2 * self.entries.len());
        }
        Some(state)
    }

    /// The known ids, in increasing order.
    pub fn ids(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.entries.iter().map(|(id, _)| *id)
    }

    /// How many members are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no other member is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(audio: bool) -> PeerState {
        PeerState {
            published: Published {
                audio,
                video: false,
                screen: false,
            },
            ..PeerState::default()
        }
    }

    #[test]
    fn keeps_entries_sorted_whatever_the_order_of_inserts() {
        let mut table = PeerTable::default();
        for id in [5, 1, 9, 3] {
            assert_eq!(table.insert(ParticipantId(id), state(false)), None);
        }
        assert_eq!(
            table.ids().map(|id| id.0).collect::<Vec<_>>(),
            vec![1, 3, 5, 9]
        );
        assert_eq!(
            table.insert(ParticipantId(3), state(true)),
            Some(state(false))
        );
        assert_eq!(table.get(ParticipantId(3)), Some(&state(true)));
        assert!(table.get(ParticipantId(4)).is_none());
        assert_eq!(table.remove(ParticipantId(1)), Some(state(false)));
        assert!(table.remove(ParticipantId(1)).is_none());
        assert!(!table.contains(ParticipantId(1)));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn an_entry_is_small_and_memory_is_given_back_as_the_room_empties() {
        assert!(std::mem::size_of::<(ParticipantId, PeerState)>() <= 16);
        let mut table = PeerTable::default();
        for id in 0..1000 {
            table.insert(ParticipantId(id), PeerState::default());
        }
        for id in 0..990 {
            table.remove(ParticipantId(id));
        }
        assert!(
            table.entries.capacity() <= 64,
            "{}",
            table.entries.capacity()
        );
    }

    #[test]
    fn a_track_carries_the_mute_state() {
        let mut s = state(true);
        s.audio_muted = true;
        let track = s.track(ParticipantId(7), Source::Microphone);
        assert!(track.muted);
        assert_eq!(
            track.id,
            crate::media::track_label(ParticipantId(7), Source::Microphone)
        );
    }
}
