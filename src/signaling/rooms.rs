//! The room registry: which rooms exist, who is in them, what each member publishes,
//! and which worker hosts each room.
//!
//! It lives on the tokio side, behind one short-held mutex (joins and leaves are
//! rare next to media). A room opens on the least loaded worker and its participants
//! join it there until `media.room_worker_participants` of them are on it; the next
//! goes to the least loaded worker still under that many of the room. A room on one
//! worker forwards without crossing threads; once it spans several, each worker of
//! the room is told which others host it ([`SpanChange`]) and the workers relay
//! publishers' packets between themselves (`media::relay`).
//!
//! Room changes reach each member's connection through a bounded queue. A member that
//! falls behind by more than the queue holds loses events, never blocks the room: its
//! [`Admission::resync`] flag is raised, and its connection then replaces what it
//! knows with a [`Rooms::snapshot`] and tells its client with a full `room_state`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use sluice_signal::protocol::{ErrorCode, ParticipantInfo, Source, TrackInfo};
use sluice_signal::sdp::Kind;
use tokio::sync::mpsc;

use crate::media::{
    participant_label, track_label, Command, MediaPlane, ParticipantId, RoomSpan, WorkerHandle,
};
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

/// Where rooms owned here spread when this node is full (a cluster): a worker of
/// another node for the next participant, or `None` to stay here.
pub trait RemotePlacement: Send + Sync + std::fmt::Debug {
    /// A worker of another node for a new participant, given how many participants
    /// this node's own workers hold.
    fn remote_worker(&self, participants_here: usize) -> Option<WorkerHandle>;
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
    /// The room now spans another worker: tell the workers ([`Rooms::announce`])
    /// before the participant's session starts.
    pub span: Option<SpanChange>,
}

/// A change in the set of workers hosting a room, and which workers must hear of it
/// (those of the old set and the new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanChange {
    /// The new set.
    pub span: RoomSpan,
    /// Who to tell.
    pub notify: Vec<usize>,
}

#[derive(Debug)]
struct Member {
    /// The worker its session is on.
    worker: usize,
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
    /// The worker it opened on.
    worker: usize,
    /// Members per worker hosting any.
    workers: BTreeMap<usize, usize>,
    members: BTreeMap<ParticipantId, Member>,
}

impl Room {
    fn worker_set(&self) -> Vec<usize> {
        self.workers.keys().copied().collect()
    }

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
    participants_per_worker: Vec<usize>,
    /// The number of the next participant to join; never reused while the process runs.
    next_id: u64,
    /// The version of the next [`RoomSpan`].
    next_span_version: u64,
    /// Workers of other nodes that members were placed on, by alias.
    remote: HashMap<usize, WorkerHandle>,
    /// How many workers this node runs (indices below are its own).
    local_workers: usize,
}

impl Inner {
    /// The least loaded worker (fewest participants, then fewest rooms) among those
    /// `eligible` admits.
    fn least_loaded(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.participants_per_worker
            .iter()
            .zip(&self.rooms_per_worker)
            .take(self.local_workers)
            .enumerate()
            .filter(|(index, _)| eligible(*index))
            .min_by_key(|(index, (participants, rooms))| (**participants, **rooms, *index))
            .map(|(index, _)| index)
    }
}

/// Rooms and their placement on workers.
#[derive(Debug)]
pub struct Rooms {
    inner: Mutex<Inner>,
    media: MediaPlane,
    max_rooms: usize,
    max_participants_per_room: usize,
    /// `media.room_worker_participants` (0: rooms stay on one worker).
    room_worker_participants: usize,
    event_queue: usize,
    metrics: Arc<Metrics>,
    /// Draining: rooms open here still take joins, no other room opens.
    no_new_rooms: AtomicBool,
    /// Spreading onto other nodes (cluster mode).
    remote_placement: OnceLock<Arc<dyn RemotePlacement>>,
}

impl Rooms {
    /// An empty registry over `media`'s workers; each member's connection is sent up to
    /// `event_queue` room changes ahead of what it has read before it needs a resync.
    /// A room spreads onto another worker once `room_worker_participants` of its members
    /// are on each of its workers (0: never).
    pub fn new(
        media: MediaPlane,
        max_rooms: usize,
        max_participants_per_room: usize,
        room_worker_participants: usize,
        event_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rooms: HashMap::new(),
                rooms_per_worker: vec![0; media.workers.len()],
                participants_per_worker: vec![0; media.workers.len()],
                next_id: 1,
                next_span_version: 1,
                remote: HashMap::new(),
                local_workers: media.workers.len(),
            }),
            media,
            max_rooms,
            max_participants_per_room,
            room_worker_participants,
            event_queue: event_queue.max(1),
            metrics,
            no_new_rooms: AtomicBool::new(false),
            remote_placement: OnceLock::new(),
        }
    }

    /// Lets rooms owned here spread onto other nodes' workers (cluster mode).
    pub fn set_remote_placement(&self, placement: Arc<dyn RemotePlacement>) {
        let _ = self.remote_placement.set(placement);
    }

    /// Numbers participants from `first` on: in a cluster, sessions of one node's
    /// rooms may live on another node's workers, so ids must not collide across nodes.
    pub fn set_first_participant_id(&self, first: u64) {
        let mut inner = self.lock();
        inner.next_id = inner.next_id.max(first);
    }

    /// The handle of worker `index`: one of this node's, or a worker of another node
    /// that members were placed on.
    fn worker_handle(&self, inner: &Inner, index: usize) -> Option<WorkerHandle> {
        self.media
            .workers
            .get(index)
            .or_else(|| inner.remote.get(&index))
            .cloned()
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
            let worker = inner.least_loaded(|_| true).ok_or(ErrorCode::Internal)?;
            if let Some(count) = inner.rooms_per_worker.get_mut(worker) {
                *count += 1;
            }
            inner.rooms.insert(
                room.to_owned(),
                Room {
                    worker,
                    workers: BTreeMap::new(),
                    members: BTreeMap::new(),
                },
            );
            self.metrics.room_opened();
            tracing::info!(room, worker, "room opened");
        }
        let entry = inner.rooms.get(room).ok_or(ErrorCode::Internal)?;
        if entry.members.len() >= self.max_participants_per_room {
            return Err(ErrorCode::RoomFull);
        }
        let local = self.media.workers.len();
        let here: usize = inner.participants_per_worker.iter().take(local).sum();
        let remote = self
            .remote_placement
            .get()
            .and_then(|placement| placement.remote_worker(here));
        let worker = match remote {
            Some(handle) => {
                inner.remote.insert(handle.index, handle.clone());
                handle
            }
            None => {
                let index = self.place(inner, entry).ok_or(ErrorCode::Internal)?;
                self.worker_handle(inner, index)
                    .ok_or(ErrorCode::Internal)?
            }
        };
        let index = worker.index;
        let id = ParticipantId(inner.next_id);
        inner.next_id += 1;
        if inner.participants_per_worker.len() <= index {
            inner.participants_per_worker.resize(index + 1, 0);
            inner.rooms_per_worker.resize(index + 1, 0);
        }
        if let Some(count) = inner.participants_per_worker.get_mut(index) {
            *count += 1;
        }
        let entry = inner.rooms.get_mut(room).ok_or(ErrorCode::Internal)?;
        let before = entry.worker_set();
        *entry.workers.entry(index).or_default() += 1;
        let span = span_change(
            room,
            before,
            entry.worker_set(),
            &mut inner.next_span_version,
        );
        let (events, receiver) = mpsc::channel(self.event_queue);
        let member = Member {
            worker: index,
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
            span,
        })
    }

    /// The worker for a new member of `room`: the room's own workers while one of them
    /// has fewer than `room_worker_participants` of its members (the least loaded of
    /// those), else the least loaded worker still under that many (or of all, when
    /// every worker is).
    fn place(&self, inner: &Inner, room: &Room) -> Option<usize> {
        let limit = self.room_worker_participants;
        if limit == 0 {
            return Some(room.worker);
        }
        let in_room = |w: usize| room.workers.get(&w).copied().unwrap_or(0);
        inner
            .least_loaded(|w| in_room(w) > 0 && in_room(w) < limit)
            .or_else(|| (room.workers.is_empty()).then_some(room.worker))
            .or_else(|| inner.least_loaded(|w| in_room(w) < limit))
            .or_else(|| inner.least_loaded(|_| true))
    }

    /// Tells every worker concerned which workers host the room now. Waits for room in
    /// their command queues: a worker that missed it would relay to the wrong set.
    pub async fn announce(&self, change: SpanChange) {
        let handles: Vec<WorkerHandle> = {
            let inner = self.lock();
            change
                .notify
                .iter()
                .filter_map(|index| self.worker_handle(&inner, *index))
                .collect()
        };
        for worker in &handles {
            {
                let _ = worker
                    .commands
                    .send(Command::RoomSpan(change.span.clone()))
                    .await;
            }
        }
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
    /// Returns the change to [`announce`](Self::announce) when the room no longer
    /// spans the worker `id` was on.
    pub fn leave(&self, room: &str, id: ParticipantId) -> Option<SpanChange> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let entry = inner.rooms.get_mut(room)?;
        let gone = entry.members.remove(&id)?;
        if let Some(count) = inner.participants_per_worker.get_mut(gone.worker) {
            *count = count.saturating_sub(1);
        }
        let before = entry.worker_set();
        if let Some(count) = entry.workers.get_mut(&gone.worker) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                entry.workers.remove(&gone.worker);
            }
        }
        let span = span_change(
            room,
            before,
            entry.worker_set(),
            &mut inner.next_span_version,
        );
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
        span
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

    /// The workers hosting members of `room`, ascending.
    pub fn workers_of(&self, room: &str) -> Vec<usize> {
        self.lock()
            .rooms
            .get(room)
            .map_or_else(Vec::new, Room::worker_set)
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

/// The change to announce when a room's workers went from `before` to `after`: none
/// while the room is on at most one worker before and after (nothing to relay, nothing
/// to undo).
fn span_change(
    room: &str,
    before: Vec<usize>,
    after: Vec<usize>,
    next_version: &mut u64,
) -> Option<SpanChange> {
    if before == after || (before.len() <= 1 && after.len() <= 1) {
        return None;
    }
    let version = *next_version;
    *next_version += 1;
    let mut notify: Vec<usize> = before.iter().chain(&after).copied().collect();
    notify.sort_unstable();
    notify.dedup();
    tracing::info!(room, workers = ?after, "room spans workers");
    Some(SpanChange {
        span: RoomSpan {
            room: room.to_owned(),
            workers: after,
            version,
        },
        notify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry over `workers` workers whose command queues the test reads.
    fn rooms(
        workers: usize,
        room_worker_participants: usize,
    ) -> (Rooms, Vec<mpsc::Receiver<Command>>) {
        let mut handles = Vec::new();
        let mut queues = Vec::new();
        for index in 0..workers {
            let (commands, queue) = mpsc::channel(64);
            handles.push(WorkerHandle {
                index,
                local_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 40000 + index as u16)),
                commands,
                candidates: None,
                fingerprint: None,
            });
            queues.push(queue);
        }
        let certificate = Arc::new(sluice_dtls::Certificate::generate().unwrap());
        let media = MediaPlane {
            workers: handles,
            dtls: Arc::new(sluice_dtls::Config::new(Arc::clone(&certificate))),
            certificate,
            relay_inboxes: Vec::new(),
            remote_relay: Arc::new(std::sync::Mutex::new(None)),
        };
        let rooms = Rooms::new(
            media,
            10,
            100,
            room_worker_participants,
            16,
            Arc::new(Metrics::new()),
        );
        (rooms, queues)
    }

    fn spans_heard(queue: &mut mpsc::Receiver<Command>) -> Vec<(Vec<usize>, u64)> {
        let mut heard = Vec::new();
        while let Ok(command) = queue.try_recv() {
            if let Command::RoomSpan(span) = command {
                heard.push((span.workers, span.version));
            }
        }
        heard
    }

    #[test]
    fn a_room_fills_a_worker_then_spreads_to_the_least_loaded_others() {
        let (rooms, _queues) = rooms(3, 2);
        let other = rooms.join("other", "o").unwrap();
        assert_eq!(other.worker.index, 0);
        let placed: Vec<usize> = (0..7)
            .map(|n| rooms.join("big", &format!("p{n}")).unwrap().worker.index)
            .collect();
        // opens on the least loaded worker (1); then 2 (empty) before 0 (busy with
        // another room); full everywhere: the least loaded again (fewest participants,
        // then fewest rooms opened on it)
        assert_eq!(placed, [1, 1, 2, 2, 0, 0, 2]);
        assert_eq!(rooms.workers_of("big"), [0, 1, 2]);
    }

    #[test]
    fn without_a_limit_a_room_stays_on_its_worker() {
        let (rooms, _queues) = rooms(2, 0);
        for n in 0..5 {
            let admission = rooms.join("r", &format!("p{n}")).unwrap();
            assert_eq!(admission.worker.index, 0);
            assert!(admission.span.is_none());
        }
    }

    #[tokio::test]
    async fn the_workers_of_a_spanning_room_hear_of_every_change_in_order() {
        let (rooms, mut queues) = rooms(2, 1);
        let first = rooms.join("r", "a").unwrap();
        assert!(first.span.is_none(), "one worker: nothing to relay");
        let mut second = rooms.join("r", "b").unwrap();
        assert_eq!(second.worker.index, 1);
        let change = second.span.take().expect("the room spans two workers");
        assert_eq!(change.notify, [0, 1]);
        rooms.announce(change).await;
        let third = rooms.join("r", "c").unwrap();
        assert!(third.span.is_none(), "same workers");
        assert!(rooms.leave("r", third.id).is_none());
        let change = rooms.leave("r", second.id).expect("back to one worker");
        assert_eq!(change.notify, [0, 1], "the worker left must hear it too");
        rooms.announce(change).await;
        for queue in &mut queues {
            let heard = spans_heard(queue);
            assert_eq!(heard.len(), 2);
            assert_eq!(heard.first().map(|h| h.0.clone()), Some(vec![0, 1]));
            assert_eq!(heard.get(1).map(|h| h.0.clone()), Some(vec![0]));
            assert!(heard.first().map(|h| h.1) < heard.get(1).map(|h| h.1));
        }
        assert!(rooms.leave("r", first.id).is_none());
        assert_eq!(rooms.room_count(), 0);
    }
}
