//! Who is speaking in each room, and last-N: in a room with more cameras than a
//! subscriber should receive, only the cameras of the most recent speakers flow.
//!
//! Speech comes from the RFC 6464 audio level each publisher's microphone packets carry
//! (no decoding): a packet louder than -50 dBov is voice. A publisher is *speaking* while
//! at least a fifth of its packets in the last second were voice, which rides over the
//! pauses between words and ignores a single click or cough. The room keeps its
//! publishers ordered by when they last spoke; the *dominant speaker* changes only to
//! someone clearly more active than the current one, so two people talking over each
//! other do not make it flicker.
//!
//! Last-N (`RouterConfig::last_n`): when a room has more camera publishers than N, each
//! subscriber receives the cameras of the first N publishers of that order (itself
//! excepted); the others are paused for it with reason [`PauseReason::LastN`] and
//! resume from a keyframe when their publisher speaks again. `RouterConfig::audio_last_n`
//! does the same for microphones (no keyframe needed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::ids::{Kind, ParticipantId};
use crate::output::{PauseReason, RouterEvent};
use crate::router::Router;

/// Length of one bucket of the speech window.
const BUCKET: Duration = Duration::from_millis(250);
/// Buckets in the window (one second).
const BUCKETS: usize = 4;
/// Share of voiced packets in the window from which a publisher is speaking.
const SPEAKING_SHARE: f64 = 0.2;
/// How much more active than the dominant speaker someone must be to take over.
const TAKEOVER_MARGIN: f64 = 0.25;

/// Voiced and total audio packets of one publisher over the last second, in buckets.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpeechActivity {
    /// Start of the newest bucket.
    newest_start: Option<Instant>,
    /// Index of the newest bucket in the arrays.
    newest: usize,
    voiced: [u32; BUCKETS],
    total: [u32; BUCKETS],
}

impl SpeechActivity {
    /// One audio packet, voice or not.
    pub(crate) fn on_packet(&mut self, now: Instant, voice: bool) {
        self.advance(now);
        if let Some(total) = self.total.get_mut(self.newest) {
            *total = total.saturating_add(1);
        }
        if voice {
            if let Some(voiced) = self.voiced.get_mut(self.newest) {
                *voiced = voiced.saturating_add(1);
            }
        }
    }

    /// The share of voiced packets in the last second (0 when nothing arrived).
    pub(crate) fn share(&mut self, now: Instant) -> f64 {
        self.advance(now);
        let total: u32 = self.total.iter().sum();
        if total == 0 {
            return 0.0;
        }
        f64::from(self.voiced.iter().sum::<u32>()) / f64::from(total)
    }

    /// Starts new buckets for the time that passed, emptying those that fall out of the
    /// window.
    fn advance(&mut self, now: Instant) {
        let Some(start) = self.newest_start else {
            self.newest_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_millis() / BUCKET.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS) {
            self.newest = (self.newest + 1) % BUCKETS;
            if let (Some(v), Some(t)) = (
                self.voiced.get_mut(self.newest),
                self.total.get_mut(self.newest),
            ) {
                *v = 0;
                *t = 0;
            }
        }
        self.newest_start = start.checked_add(BUCKET * steps as u32).or(Some(now));
    }
}

/// The speaking order and dominant speaker of one room.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomSpeakers {
    /// Publishers, most recent speaker first; those that never spoke last, in the order
    /// they joined.
    pub(crate) order: Vec<ParticipantId>,
    pub(crate) dominant: Option<ParticipantId>,
}

impl Router {
    /// Updates every room's speaking order and dominant speaker, then applies last-N.
    /// Runs on the layer-selection timer.
    pub(crate) fn update_speakers(&mut self, now: Instant) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.update_room_speakers(&room, now);
            self.apply_last_n(&room);
        }
        // rooms that closed
        let Router {
            speakers, rooms, ..
        } = self;
        speakers.retain(|room, _| rooms.contains_key(room));
    }

    fn update_room_speakers(&mut self, room: &str, now: Instant) {
        let members: Vec<ParticipantId> = self.rooms.get(room).cloned().unwrap_or_default();
        let mut shares: BTreeMap<ParticipantId, f64> = BTreeMap::new();
        for id in &members {
            if let Some(p) = self.participants.get_mut(id) {
                shares.insert(*id, p.speech.share(now));
            }
        }
        let entry = self.speakers.entry(room.to_owned()).or_default();
        entry.order.retain(|id| members.contains(id));
        for id in &members {
            if !entry.order.contains(id) {
                entry.order.push(*id);
            }
        }
        // those speaking now move to the front, the most active first; the rest keep
        // their order
        let share = |id: &ParticipantId| shares.get(id).copied().unwrap_or(0.0);
        let mut speaking: Vec<ParticipantId> = entry
            .order
            .iter()
            .copied()
            .filter(|id| share(id) >= SPEAKING_SHARE)
            .collect();
        speaking.sort_by(|a, b| share(b).total_cmp(&share(a)));
        entry.order.retain(|id| !speaking.contains(id));
        for (i, id) in speaking.iter().enumerate() {
            entry.order.insert(i, *id);
        }
        let candidate = speaking.first().copied();
        let dominant = match (entry.dominant, candidate) {
            (_, None) => entry.dominant.filter(|d| members.contains(d)),
            (None, Some(c)) => Some(c),
            (Some(d), Some(c)) if !members.contains(&d) || share(&d) < SPEAKING_SHARE => Some(c),
            (Some(d), Some(c)) if share(&c) >= share(&d) + TAKEOVER_MARGIN => Some(c),
            (Some(d), Some(_)) => Some(d),
        };
        if dominant != entry.dominant {
            entry.dominant = dominant;
            if let Some(participant) = dominant {
                debug!(room, participant = participant.0, "dominant speaker");
                self.push_event(RouterEvent::DominantSpeaker {
                    room: room.to_owned(),
                    participant,
                });
            }
        }
    }

    /// Pauses, for every subscriber of `room`, the cameras of publishers outside the N
    /// most recent speakers (and, with `audio_last_n`, the microphones outside the K
    /// most recent), and resumes those inside: video from a keyframe, audio at once.
    fn apply_last_n(&mut self, room: &str) {
        for (kind, n) in [
            (Kind::Video, self.config.last_n),
            (Kind::Audio, self.config.audio_last_n),
        ] {
            if n > 0 {
                self.apply_last_n_of(room, kind, n);
            }
        }
    }

    fn apply_last_n_of(&mut self, room: &str, kind: Kind, n: usize) {
        let Some(order) = self.speakers.get(room).map(|s| s.order.clone()) else {
            return;
        };
        // publishers with a track of this kind, in speaking order
        let publishing: Vec<(ParticipantId, Vec<crate::ids::TrackId>)> = order
            .iter()
            .filter_map(|id| {
                let p = self.participants.get(id)?;
                let tracks: Vec<_> = p
                    .published
                    .iter()
                    .copied()
                    .filter(|t| {
                        self.tracks
                            .get(t)
                            .is_some_and(|t| t.kind == kind && !t.last_n_exempt)
                    })
                    .collect();
                (!tracks.is_empty()).then_some((*id, tracks))
            })
            .collect();
        let limited = publishing.len() > n;
        let members: Vec<ParticipantId> = self.rooms.get(room).cloned().unwrap_or_default();
        let mut changes = Vec::new();
        for subscriber in members {
            let allowed: Vec<ParticipantId> = publishing
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id != subscriber)
                .take(if limited { n } else { usize::MAX })
                .collect();
            for (publisher, tracks) in &publishing {
                let excluded = !allowed.contains(publisher);
                for track_id in tracks {
                    let Some(t) = self.tracks.get_mut(track_id) else {
                        continue;
                    };
                    let Some(sub) = t
                        .subscriptions
                        .iter_mut()
                        .find(|s| s.subscriber == subscriber)
                    else {
                        continue;
                    };
                    if sub.last_n_excluded == excluded {
                        continue;
                    }
                    sub.last_n_excluded = excluded;
                    let target = sub.target;
                    // it starts again like a new source: numbering continues, timestamps
                    // advance by the time it was left out
                    sub.layer = None;
                    if !excluded && kind == Kind::Video {
                        // from a keyframe of the encoding chosen for it
                        t.request_keyframe(target);
                    }
                    if kind == Kind::Video {
                        changes.push((subscriber, *publisher, excluded));
                    }
                }
            }
        }
        for (subscriber, publisher, paused) in changes {
            self.push_event(RouterEvent::VideoPaused {
                subscriber,
                publisher,
                paused,
                reason: PauseReason::LastN,
            });
        }
    }

    /// The dominant speaker of `room`, if anyone spoke yet.
    pub fn dominant_speaker(&self, room: &str) -> Option<ParticipantId> {
        self.speakers.get(room).and_then(|s| s.dominant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_counts_the_last_second_only() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut a = SpeechActivity::default();
        for i in 0..50u64 {
            a.on_packet(ms(20 * i), i % 2 == 0);
        }
        assert!((a.share(ms(990)) - 0.5).abs() < 0.05);
        // a second of silence packets: the voice falls out of the window
        for i in 50..100u64 {
            a.on_packet(ms(20 * i), false);
        }
        assert!(a.share(ms(1990)) < 0.1);
        // nothing at all for a long time
        assert_eq!(a.share(ms(60_000)), 0.0);
    }
}
