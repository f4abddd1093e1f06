//! The room registry: which rooms exist, who is in them, and which worker hosts each.
//!
//! It lives on the tokio side, behind one short-held mutex (joins and leaves are
//! rare next to media). A room is placed on the least loaded worker when it opens
//! and stays there: every participant of a room has its session on that worker, so
//! forwarding never crosses threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_signal::protocol::{ErrorCode, ParticipantInfo};
use tokio::sync::mpsc;

use crate::media::{MediaPlane, ParticipantId, WorkerHandle};
use crate::metrics::Metrics;

/// Room changes queued per participant before the slowest connection loses events
/// (and is told to reconnect).
const ROOM_EVENT_QUEUE: usize = 256;

/// A change in a participant's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// Someone joined.
    Joined(ParticipantInfo),
    /// Someone left.
    Left(String),
}

/// The text form of a participant id (msid stream id, `participant_id` on the wire).
pub fn participant_label(id: ParticipantId) -> String {
    format!("p-{id}")
}

/// The inverse of [`participant_label`].
pub fn parse_participant_label(label: &str) -> Option<ParticipantId> {
    label.strip_prefix("p-")?.parse().ok()
}

/// What a successful join returns.
#[derive(Debug)]
pub struct Admission {
    /// The new participant's id.
    pub id: ParticipantId,
    /// The worker hosting the room.
    pub worker: WorkerHandle,
    /// Everyone else already in the room.
    pub others: Vec<ParticipantInfo>,
    /// Changes in the room from now on.
    pub events: mpsc::Receiver<RoomEvent>,
}

#[derive(Debug)]
struct Member {
    name: String,
    events: mpsc::Sender<RoomEvent>,
}

#[derive(Debug)]
struct Room {
    worker: usize,
    members: BTreeMap<ParticipantId, Member>,
}

#[derive(Debug, Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    rooms_per_worker: Vec<usize>,
    next_id: ParticipantId,
}

/// Rooms and their placement on workers.
#[derive(Debug)]
pub struct Rooms {
    inner: Mutex<Inner>,
    media: MediaPlane,
    max_rooms: usize,
    max_participants_per_room: usize,
    metrics: Arc<Metrics>,
}

impl Rooms {
    /// An empty registry over `media`'s workers.
    pub fn new(
        media: MediaPlane,
        max_rooms: usize,
        max_participants_per_room: usize,
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
            metrics,
        }
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
        let id = inner.next_id;
        inner.next_id += 1;
        let info = ParticipantInfo {
            id: participant_label(id),
            name: name.to_owned(),
        };
        let mut others = Vec::with_capacity(entry.members.len());
        for (other, member) in &entry.members {
            others.push(ParticipantInfo {
                id: participant_label(*other),
                name: member.name.clone(),
            });
            let _ = member.events.try_send(RoomEvent::Joined(info.clone()));
        }
        let (events, receiver) = mpsc::channel(ROOM_EVENT_QUEUE);
        entry.members.insert(
            id,
            Member {
                name: name.to_owned(),
                events,
            },
        );
        self.metrics.participant_joined();
        Ok(Admission {
            id,
            worker,
            others,
            events: receiver,
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
        let label = participant_label(id);
        for member in entry.members.values() {
            let _ = member.events.try_send(RoomEvent::Left(label.clone()));
        }
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

    /// Open rooms.
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }
}
