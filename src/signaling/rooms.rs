//! The room registry: which rooms exist, who is in them, what each member publishes,
//! and which worker hosts each room.
//!
//! It lives on the tokio side, behind one short-held mutex (joins and leaves are
//! rare next to media). A room is placed on the least loaded worker when it opens
//! and stays there: every participant of a room has its session on that worker, so
//! forwarding never crosses threads.
//!
//! Room changes reach each member's connection through a bounded queue. A member that
//! falls behind by more than the queue holds loses events, never blocks the room: its
//! [`Admission::resync`] flag is raised, and its connection then replaces what it
//! knows with a [`Rooms::snapshot`] and tells its client with a full `room_state`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_signal::protocol::{ErrorCode, ParticipantInfo, Source, TrackInfo};
use sluice_signal::sdp::Kind;
use tokio::sync::mpsc;

use crate::media::{participant_label, track_label, MediaPlane, ParticipantId, WorkerHandle};
use crate::metrics::Metrics;

/// What a participant publishes: the sources its answer sends on its own m-lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Its microphone (mid 0).
    pub audio: bool,
    /// Its camera (mid 1).
    pub video: bool,
    /// Its screen share (the m-line added on `publish`).
    pub screen: bool,
}

impl Published {
    /// Whether `source` is published.
    pub fn has(self, source: Source) -> bool {
        match source {
            Source::Microphone => self.audio,
            Source::Camera => self.video,
            Source::Screen => self.screen,
        }
    }

    /// The published tracks of `id` as the protocol lists them, with the mute state of
    /// `info`.
    pub fn tracks(self, id: ParticipantId, info: &ParticipantInfo) -> Vec<TrackInfo> {
        Source::ALL
            .into_iter()
            .filter(|source| self.has(*source))
            .map(|source| track_info(id, source, info))
            .collect()
    }
}

/// `id`'s track from `source` as the protocol announces it.
pub fn track_info(id: ParticipantId, source: Source, info: &ParticipantInfo) -> TrackInfo {
    TrackInfo {
        id: track_label(id, source),
        kind: source.kind(),
        source,
        muted: match source {
            Source::Microphone => info.audio_muted,
            Source::Camera => info.video_muted,
            Source::Screen => false,
        },
    }
}

/// Another member of the room as a connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The member.
    pub id: ParticipantId,
    /// Its id, name, mute state and tracks as the protocol announces them.
    pub info: ParticipantInfo,
    /// What it publishes: only these tracks get m-lines in the others' offers.
    pub published: Published,
}

/// A change in a participant's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// Someone joined (it publishes nothing yet). Boxed so that the event, and every
    /// slot of each member's event queue, stays small.
    Joined(Box<Peer>),
    /// Someone's published tracks changed (after its answer).
    Published {
        /// Who.
        id: ParticipantId,
        /// What it publishes now.
        published: Published,
    },
    /// Someone turned its microphone or camera off or on.
    Muted {
        /// Who.
        id: ParticipantId,
        /// Which track.
        kind: Kind,
        /// Off or on.
        muted: bool,
    },
    /// Someone left.
    Left(ParticipantId),
}

/// What a successful join returns.
#[derive(Debug)]
pub struct Admission {
    /// The new participant's id.
    pub id: ParticipantId,
    /// The worker hosting the room.
    pub worker: WorkerHandle,
    /// Everyone else already in the room.
    pub others: Vec<Peer>,
    /// Changes in the room from now on.
    pub events: mpsc::Receiver<RoomEvent>,
    /// Raised when a change could not be queued: `events` is no longer complete.
    pub resync: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Member {
    info: ParticipantInfo,
    published: Published,
    events: mpsc::Sender<RoomEvent>,
    resync: Arc<AtomicBool>,
}

impl Member {
    fn peer(&self, id: ParticipantId) -> Peer {
        Peer {
            id,
            info: ParticipantInfo {
                tracks: self.published.tracks(id, &self.info),
                ..self.info.clone()
            },
            published: self.published,
        }
    }
}

#[derive(Debug)]
struct Room {
    worker: usize,
    members: BTreeMap<ParticipantId, Member>,
}

impl Room {
    /// Queues `event` for every member but `except`; a full queue raises the member's
    /// resync flag instead of blocking or dropping silently.
    fn broadcast(&self, except: ParticipantId, event: &RoomEvent, metrics: &Metrics) {
        for (id, member) in &self.members {
            if *id == except || member.events.is_closed() {
                continue;
            }
            if member.events.try_send(event.clone()).is_err()
                && !member.resync.swap(true, Ordering::AcqRel)
            {
                metrics.room_events_overflowed();
                tracing::info!(participant = id.0, "room events overflowed: resync");
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    rooms_per_worker: Vec<usize>,
    /// The number of the next participant to join; never reused while the process runs.
    next_id: u64,
}

/// Rooms and their placement on workers.
#[derive(Debug)]
pub struct Rooms {
    inner: Mutex<Inner>,
    media: MediaPlane,
    max_rooms: usize,
    max_participants_per_room: usize,
    event_queue: usize,
    metrics: Arc<Metrics>,
    /// Draining: rooms open here still take joins, no other room opens.
    no_new_rooms: AtomicBool,
}

impl Rooms {
    /// An empty registry over `media`'s workers; each member's connection is sent up to
    /// `event_queue` room changes ahead of what it has read before it needs a resync.
    pub fn new(
        media: MediaPlane,
        max_rooms: usize,
        max_participants_per_room: usize,
        event_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rooms: HashMap::new(),
                rooms_per_worker: vec![0; media.workers.len()],
                next_id: 1,
            }),
            media,
            max_rooms,
            max_participants_per_room,
            event_queue: event_queue.max(1),
            metrics,
            no_new_rooms: AtomicBool::new(false),
        }
    }

    /// Starts draining: from now on only rooms already open here take joins, so that
    /// the calls in progress go on while the node empties.
    pub fn stop_opening_rooms(&self) {
        self.no_new_rooms.store(true, Ordering::Release);
    }

    /// The media plane (certificate, workers).
    pub fn media(&self) -> &MediaPlane {
        &self.media
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than refusing every later join, so keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits `name` into `room`, opening it on the least loaded worker if new, and
    /// tells the others.
    pub fn join(&self, room: &str, name: &str) -> Result<Admission, ErrorCode> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if !inner.rooms.contains_key(room) {
            if self.no_new_rooms.load(Ordering::Acquire) {
                return Err(ErrorCode::ShuttingDown);
            }
            if inner.rooms.len() >= self.max_rooms {
                return Err(ErrorCode::TooManyRooms);
            }
            let worker = inner
                .rooms_per_worker
                .iter()
                .enumerate()
                .min_by_key(|(_, count)| **count)
                .map(|(index, _)| index)
                .ok_or(ErrorCode::Internal)?;
            if let Some(count) = inner.rooms_per_worker.get_mut(worker) {
                *count += 1;
            }
            inner.rooms.insert(
                room.to_owned(),
                Room {
                    worker,
                    members: BTreeMap::new(),
                },
            );
            self.metrics.room_opened();
            tracing::info!(room, worker, "room opened");
        }
        let entry = inner.rooms.get_mut(room).ok_or(ErrorCode::Internal)?;
        if entry.members.len() >= self.max_participants_per_room {
            return Err(ErrorCode::RoomFull);
        }
        let worker = self
            .media
            .workers
            .get(entry.worker)
            .cloned()
            .ok_or(ErrorCode::Internal)?;
        let id = ParticipantId(inner.next_id);
        inner.next_id += 1;
        let (events, receiver) = mpsc::channel(self.event_queue);
        let member = Member {
            info: ParticipantInfo::new(participant_label(id), name),
            published: Published::default(),
            events,
            resync: Arc::new(AtomicBool::new(false)),
        };
        let others = entry.members.iter().map(|(id, m)| m.peer(*id)).collect();
        entry.broadcast(
            id,
            &RoomEvent::Joined(Box::new(member.peer(id))),
            &self.metrics,
        );
        let resync = Arc::clone(&member.resync);
        entry.members.insert(id, member);
        self.metrics.participant_joined();
        Ok(Admission {
            id,
            worker,
            others,
            events: receiver,
            resync,
        })
    }

    /// Records what `id` publishes and tells the others when it changed.
    pub fn set_published(&self, room: &str, id: ParticipantId, published: Published) {
        let mut inner = self.lock();
        let Some(entry) = inner.rooms.get_mut(room) else {
            return;
        };
        let Some(member) = entry.members.get_mut(&id) else {
            return;
        };
        if member.published == published {
            return;
        }
        member.published = published;
        entry.broadcast(id, &RoomEvent::Published { id, published }, &self.metrics);
    }

    /// Records that `id` turned its `kind` track off or on and tells the others.
    pub fn set_muted(&self, room: &str, id: ParticipantId, kind: Kind, muted: bool) {
        let mut inner = self.lock();
        let Some(entry) = inner.rooms.get_mut(room) else {
            return;
        };
        let Some(member) = entry.members.get_mut(&id) else {
            return;
        };
        let flag = match kind {
            Kind::Audio => &mut member.info.audio_muted,
            Kind::Video => &mut member.info.video_muted,
        };
        if *flag == muted {
            return;
        }
        *flag = muted;
        entry.broadcast(id, &RoomEvent::Muted { id, kind, muted }, &self.metrics);
    }

    /// Everyone in `room` but `except`, as they are now.
    pub fn snapshot(&self, room: &str, except: ParticipantId) -> Vec<Peer> {
        let inner = self.lock();
        inner.rooms.get(room).map_or_else(Vec::new, |entry| {
            entry
                .members
                .iter()
                .filter(|(id, _)| **id != except)
                .map(|(id, m)| m.peer(*id))
                .collect()
        })
    }

    /// Removes `id` from `room`, tells the others, and closes the room when empty.
    pub fn leave(&self, room: &str, id: ParticipantId) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(entry) = inner.rooms.get_mut(room) else {
            return;
        };
        if entry.members.remove(&id).is_none() {
            return;
        }
        self.metrics.participant_left();
        entry.broadcast(id, &RoomEvent::Left(id), &self.metrics);
        if entry.members.is_empty() {
            let worker = entry.worker;
            inner.rooms.remove(room);
            if let Some(count) = inner.rooms_per_worker.get_mut(worker) {
                *count = count.saturating_sub(1);
            }
            self.metrics.room_closed();
            tracing::info!(room, worker, "room closed");
        }
    }

    /// Ends the sessions in `room` on this node so that they rejoin the room where the
    /// cluster places it (another node holds its lease: two copies of one room must not
    /// both go on). Each member's event stream ends, which its connection reads as `bye
    /// room_moved`; members stay until their connections leave as usual. Returns how many
    /// were told.
    pub fn move_out(&self, room: &str) -> usize {
        let mut inner = self.lock();
        let Some(entry) = inner.rooms.get_mut(room) else {
            return 0;
        };
        let mut moved = 0;
        for member in entry.members.values_mut() {
            if !member.events.is_closed() {
                // dropping the only sender ends the connection's receiver
                let (ended, _) = mpsc::channel(1);
                member.events = ended;
                moved += 1;
            }
        }
        moved
    }

    /// Open rooms.
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    /// Whether `room` is open on this node.
    pub fn contains(&self, room: &str) -> bool {
        self.lock().rooms.contains_key(room)
    }

    /// The names of the open rooms (a cluster node renews their leases).
    pub fn names(&self) -> Vec<String> {
        self.lock().rooms.keys().cloned().collect()
    }
}
