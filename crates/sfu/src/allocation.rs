//! What each subscriber gets within its link: a send-side bandwidth estimate per
//! subscriber (its transport-cc feedback on the packets we stamp), an allocation of that
//! estimate over the tracks it receives, and padding probes that find headroom when the
//! allocation wants more than the estimate.
//!
//! The allocation runs on the layer-selection timer. Audio comes first; then every video
//! track gets its lowest live encoding, most recent speaker first, and tracks that do not
//! fit are paused (the most recent speaker's never); then the tracks move up one encoding
//! at a time toward what the subscriber's tile asked for, while the estimate allows. A
//! subscriber that never sent transport-cc feedback has no estimate and is not limited.

use std::time::{Duration, Instant};

use sluice_bwe::{Bwe, BweConfig, ProbeCluster};
use tracing::debug;

use crate::forward::{stamp_transport_seq, SRTP_OVERHEAD_BYTES};
use crate::ids::{Kind, ParticipantId, TrackId};
use crate::media::{abs_send_time, rtx_payload_type, EXT_ABS_SEND_TIME, EXT_TRANSPORT_CC, PT_VP8};
use crate::output::{OutputKind, PauseReason, RouterEvent};
use crate::router::Router;
use crate::state::{BitrateMeter, ALL_TEMPORAL_LAYERS, TEMPORAL_LAYERS};

/// Assumed bitrate of an encoding not yet measured, so a new track is not taken as free.
const UNMEASURED_VIDEO_BPS: u64 = 150_000;
const UNMEASURED_AUDIO_BPS: u64 = 40_000;
/// Share of the estimate given to the encodings' average rates.
const ALLOCATED_SHARE_PERCENT: u64 = 85;
/// A subscription moves up at most one encoding this often.
const UPGRADE_INTERVAL: Duration = Duration::from_secs(3);
/// A participant whose microphone carried voice this recently is speaking now.
const SPEAKING_WINDOW: Duration = Duration::from_secs(2);
/// A video track whose lowest encoding does not fit is paused only after this long.
const PAUSE_AFTER: Duration = Duration::from_secs(10);
/// A flowing track is paused only while its subscriber's link loses at least this share.
const PAUSE_LOSS_FRACTION: f64 = 0.02;
/// A paused video track stays paused at least this long.
const RESUME_HOLD: Duration = Duration::from_secs(3);
/// Resuming a track or moving it to a higher encoding needs this much room beyond its
/// measured rate.
const STEP_UP_MARGIN_PERCENT: u64 = 20;
/// Padding bytes per probe packet (the RTP padding count is one byte).
const PROBE_PADDING_BYTES: usize = 255;
/// Probe packets sent per timer call, bounding the work of one call.
const MAX_PROBE_PACKETS_PER_TIMEOUT: u32 = 64;

/// The path to one participant as a subscriber.
#[derive(Debug)]
pub(crate) struct SubscriberLink {
    pub(crate) bwe: Bwe,
    /// Transport-cc reports received from it; until the first, the estimate is a guess
    /// and nothing is limited by it.
    pub(crate) feedback_reports: u64,
    pub(crate) probe: Option<ActiveProbe>,
    /// What the last allocation gave it and what it would have liked.
    pub(crate) allocated_bps: u64,
    pub(crate) desired_bps: u64,
    pub(crate) paused_tracks: usize,
    pub(crate) reduced_frame_rate_tracks: usize,
    /// Earlier Opus frames repeated in each audio packet to it (RED); 0: plain Opus.
    pub(crate) red_distance: u8,
    /// Since when its loss has been below the RED threshold while RED is on.
    pub(crate) red_quiet_since: Option<Instant>,
    /// Media packets per FEC packet on its video that accepted FEC (see `fec`); 0: none.
    pub(crate) fec_interval: u8,
    /// Since when its loss has called for less FEC while FEC is on.
    pub(crate) fec_quiet_since: Option<Instant>,
    /// The packets its next FEC packets protect, as they left.
    pub(crate) fec: crate::fec::FecEncoder,
    /// Paces its RTP once it has an estimate (see `pacing`).
    pub(crate) pacer: Option<sluice_bwe::pacer::Pacer<Vec<u8>>>,
}

/// A probe cluster being sent as padding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveProbe {
    cluster: ProbeCluster,
    sent_bytes: usize,
    sent_packets: u32,
    next_at: Instant,
}

impl SubscriberLink {
    pub(crate) fn new(config: &BweConfig) -> Self {
        Self {
            bwe: Bwe::new(config.clone()),
            feedback_reports: 0,
            probe: None,
            allocated_bps: 0,
            desired_bps: 0,
            paused_tracks: 0,
            reduced_frame_rate_tracks: 0,
            red_distance: 0,
            red_quiet_since: None,
            fec_interval: 0,
            fec_quiet_since: None,
            fec: crate::fec::FecEncoder::default(),
            pacer: None,
        }
    }

    /// The estimate once feedback has made it meaningful (see also
    /// `RouterConfig::bandwidth_allocation`).
    pub(crate) fn estimate_bps(&self) -> Option<u64> {
        (self.feedback_reports > 0).then(|| self.bwe.estimate_bps())
    }

    /// The earliest of its timers: the estimator's and the next probe packet.
    pub(crate) fn timer(&self) -> Option<Instant> {
        let probe = self.probe.map(|p| p.next_at);
        let pacer = self.pacer.as_ref().and_then(|p| p.poll_timeout());
        [self.bwe.poll_timeout(), probe, pacer]
            .into_iter()
            .flatten()
            .min()
    }
}

/// What a subscriber's estimate and allocation look like, for logs and a debug endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubscriberReport {
    /// The bandwidth estimate toward it; `None` before its first transport-cc feedback.
    pub estimate_bps: Option<u64>,
    /// What its feedback acknowledged as received, per second (the estimator's measure
    /// of what actually got through).
    pub acked_bps: Option<u64>,
    /// Round-trip time measured from its feedback.
    pub rtt: Duration,
    /// Share of the packets sent to it that its feedback reported lost, when known.
    pub loss_fraction: Option<f64>,
    /// Probe clusters whose result the estimator used.
    pub probe_results: u64,
    /// What the last allocation gave its tracks.
    pub allocated_bps: u64,
    /// What its tracks would take at the encodings its tiles ask for.
    pub desired_bps: u64,
    /// Video tracks paused for it because even their lowest encoding did not fit.
    pub paused_tracks: usize,
    /// Video tracks sent to it at a reduced frame rate (upper temporal layers left out)
    /// because their lowest encoding did not fit whole.
    pub reduced_frame_rate_tracks: usize,
    /// Earlier Opus frames repeated in each audio packet to it (RED, where its answer
    /// accepted it); 0: plain Opus.
    pub audio_redundancy: u8,
    /// Video packets per ULPFEC packet added to its video (in RED, where its answer
    /// accepted both) because its link loses packets; 0: no FEC.
    pub video_fec_interval: u8,
}

/// What one subscription delivers now, for a debug endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionReport {
    /// The track.
    pub track: TrackId,
    /// Whose track.
    pub publisher: ParticipantId,
    /// Audio or video.
    pub kind: Kind,
    /// Encodings the track has (1 without simulcast).
    pub layers: usize,
    /// The encoding forwarded now; `None` while paused or before its first keyframe.
    pub layer: Option<usize>,
    /// The encoding it is switching to (at that encoding's next keyframe).
    pub target: usize,
    /// The highest encoding its tile asked for.
    pub max_layer: usize,
    /// The highest temporal layer its bandwidth allows; `None` when not limited.
    pub temporal_cap: Option<u8>,
    /// Paused for lack of bandwidth.
    pub paused: bool,
}

/// One video track in a subscriber's allocation.
struct Candidate {
    track: TrackId,
    /// Measured bitrate of each encoding (lowest first), never 0.
    layer_bps: Vec<u64>,
    /// Bitrate of the lowest live encoding with only temporal layers 0..=t, for each cap
    /// `t` below its highest layer; empty when the publisher sends no temporal layers.
    temporal_bps: Vec<u64>,
    /// The temporal cap it has now.
    current_temporal: u8,
    /// Live encodings, lowest first.
    live: Vec<usize>,
    /// The highest encoding the tile asked for (as a live encoding).
    wanted: usize,
    /// The encoding it gets now, if not paused.
    current: Option<usize>,
    /// Paused since then (for the hold before a resume).
    paused_since: Option<Instant>,
    /// Its lowest encoding has not fitted since then (for the wait before a pause).
    short_since: Option<Instant>,
    last_voice_at: Option<Instant>,
}

/// Loss at which RED repeats two earlier frames instead of one.
const RED_TWO_FRAMES_LOSS: f64 = 0.10;
/// RED is reduced or turned off only after the loss stayed lower this long, so a link
/// that loses in bursts keeps its protection between them.
const RED_OFF_AFTER: Duration = Duration::from_secs(10);

/// How many earlier frames to repeat for a subscriber whose feedback reports `loss`:
/// more at once when the loss rises, less only after [`RED_OFF_AFTER`] of lower loss.
/// Returns the distance and since when a lower one has been wanted.
fn red_decision(
    threshold: Option<f64>,
    loss: Option<f64>,
    current: u8,
    quiet_since: Option<Instant>,
    now: Instant,
) -> (u8, Option<Instant>) {
    let Some(threshold) = threshold else {
        return (0, None);
    };
    let loss = loss.unwrap_or(0.0);
    let wanted = if loss >= RED_TWO_FRAMES_LOSS.max(threshold) {
        2
    } else if loss >= threshold {
        1
    } else {
        0
    };
    if wanted >= current {
        return (wanted, None);
    }
    step_down_after(RED_OFF_AFTER, current, wanted, quiet_since, now)
}

/// The second half of a redundancy decision that wants less protection than `current`:
/// `wanted` once less has been wanted for `hold` (counted from `quiet_since`, or from
/// `now` when this is the first time), `current` meanwhile. Returns the setting and since
/// when less has been wanted.
pub(crate) fn step_down_after(
    hold: Duration,
    current: u8,
    wanted: u8,
    quiet_since: Option<Instant>,
    now: Instant,
) -> (u8, Option<Instant>) {
    let since = quiet_since.unwrap_or(now);
    if now.saturating_duration_since(since) >= hold {
        (wanted, None)
    } else {
        (current, Some(since))
    }
}

/// What a video track gets: an encoding, and the highest of its temporal layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    layer: usize,
    temporal: u8,
}

impl Candidate {
    /// The bitrate of a step.
    fn cost(&self, step: Step) -> u64 {
        if step.temporal == ALL_TEMPORAL_LAYERS {
            self.layer_bps
                .get(step.layer)
                .copied()
                .unwrap_or(UNMEASURED_VIDEO_BPS)
        } else {
            self.temporal_bps
                .get(usize::from(step.temporal))
                .copied()
                .unwrap_or(UNMEASURED_VIDEO_BPS)
        }
    }

    /// The step above `step`: the next temporal layer of the lowest encoding until it is
    /// whole, then the next live encoding up to what the tile asked for.
    fn next_step(&self, step: Step) -> Option<Step> {
        if step.temporal != ALL_TEMPORAL_LAYERS {
            let up = step.temporal.saturating_add(1);
            let temporal = if usize::from(up) < self.temporal_bps.len() {
                up
            } else {
                ALL_TEMPORAL_LAYERS
            };
            return Some(Step { temporal, ..step });
        }
        let &layer = self
            .live
            .iter()
            .find(|&&l| l > step.layer && l <= self.wanted)?;
        Some(Step {
            layer,
            temporal: ALL_TEMPORAL_LAYERS,
        })
    }
}

/// Cumulative bitrates of temporal layers 0..=t for every cap below the highest layer
/// measured; empty when only the base layer carries anything (no temporal layers).
fn temporal_costs(meters: &[BitrateMeter; TEMPORAL_LAYERS]) -> Vec<u64> {
    let Some(top) = meters.iter().rposition(|m| m.bps() > 0) else {
        return Vec::new();
    };
    let mut sum = 0u64;
    meters
        .iter()
        .take(top)
        .map(|m| {
            sum += m.bps();
            sum.max(1)
        })
        .collect()
}

impl Router {
    /// A transport-cc report from `from` (a subscriber) about the packets we sent it.
    pub(crate) fn on_transport_feedback(
        &mut self,
        now: Instant,
        from: ParticipantId,
        datagram: &[u8],
    ) {
        let pacing = self.config.bandwidth_allocation;
        if let Some(p) = self.participants.get_mut(&from) {
            if p.link.bwe.on_feedback_bytes(now, datagram).is_ok() {
                p.link.feedback_reports += 1;
                if pacing && p.link.pacer.is_none() {
                    p.link.pacer = Some(crate::pacing::new_pacer());
                }
            }
        }
    }

    /// The estimate and allocation of one subscriber.
    pub fn subscriber_report(&self, id: ParticipantId) -> Option<SubscriberReport> {
        let p = self.participants.get(&id)?;
        let bwe = p.link.bwe.stats();
        let measured = p.link.feedback_reports > 0;
        Some(SubscriberReport {
            estimate_bps: p.link.estimate_bps(),
            acked_bps: bwe.acked_bps.filter(|_| measured),
            rtt: bwe.rtt,
            loss_fraction: bwe.loss_fraction,
            probe_results: bwe.probe_results,
            allocated_bps: p.link.allocated_bps,
            desired_bps: p.link.desired_bps,
            paused_tracks: p.link.paused_tracks,
            reduced_frame_rate_tracks: p.link.reduced_frame_rate_tracks,
            audio_redundancy: p.link.red_distance,
            video_fec_interval: p.link.fec_interval,
        })
    }

    /// What each track `id` receives gets to it now.
    pub fn subscription_reports(&self, id: ParticipantId) -> Vec<SubscriptionReport> {
        let Some(p) = self.participants.get(&id) else {
            return Vec::new();
        };
        p.subscribed
            .iter()
            .filter_map(|track_id| {
                let t = self.tracks.get(track_id)?;
                let sub = t.subscriptions.iter().find(|s| s.subscriber == id)?;
                Some(SubscriptionReport {
                    track: *track_id,
                    publisher: t.publisher,
                    kind: t.kind,
                    layers: t.layers.len(),
                    layer: sub.layer,
                    target: sub.target,
                    max_layer: sub.max_layer.min(t.layers.len().saturating_sub(1)),
                    temporal_cap: (sub.temporal_cap != ALL_TEMPORAL_LAYERS)
                        .then_some(sub.temporal_cap),
                    paused: sub.paused,
                })
            })
            .collect()
    }

    /// Divides every subscriber's estimate over the tracks it receives (see the module
    /// documentation) and sets each subscription's encoding cap and pause state.
    pub(crate) fn allocate(&mut self, now: Instant) {
        let silence = self.config.layer_silence;
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            self.allocate_for(now, id, silence);
        }
    }

    fn allocate_for(&mut self, now: Instant, id: ParticipantId, silence: Duration) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let estimate = p
            .link
            .estimate_bps()
            .filter(|_| self.config.bandwidth_allocation);
        let p_loss = p.link.bwe.stats().loss_fraction;
        let (red_distance, red_quiet_since) = red_decision(
            self.config.audio_red_loss_threshold,
            p_loss,
            p.link.red_distance,
            p.link.red_quiet_since,
            now,
        );
        let (fec_interval, fec_quiet_since) = crate::fec::fec_decision(
            self.config.video_fec_loss_threshold,
            p_loss,
            p.link.fec_interval,
            p.link.fec_quiet_since,
            now,
        );
        let mut audio_bps = 0u64;
        // whether any of its video gets FEC: the estimate left for video shrinks by it
        let mut fec_on = false;
        let mut candidates: Vec<Candidate> = Vec::new();
        for track_id in &p.subscribed {
            let Some(t) = self.tracks.get(track_id) else {
                continue;
            };
            let Some(sub) = t.subscriptions.iter().find(|s| s.subscriber == id) else {
                continue;
            };
            if sub.last_n_excluded {
                // not sent at all (last-N): costs nothing
                continue;
            }
            if t.kind == Kind::Audio {
                let measured = t.layers.first().map_or(0, |l| l.bitrate.bps());
                let plain = if measured == 0 {
                    UNMEASURED_AUDIO_BPS
                } else {
                    measured
                };
                // each repeated frame costs about one more frame (headers are shared,
                // so this errs on the safe side)
                let copies = if sub.red_accepted {
                    1 + u64::from(red_distance)
                } else {
                    1
                };
                audio_bps += plain * copies;
                continue;
            }
            fec_on |= sub.fec_accepted && fec_interval > 0;
            let live: Vec<usize> = (0..t.layers.len())
                .filter(|&i| t.layers.get(i).is_some_and(|l| l.is_live(now, silence)))
                .collect();
            let wanted = t.best_layer(sub.max_layer, now, silence);
            let layer_bps = t
                .layers
                .iter()
                .map(|l| match l.bitrate.bps() {
                    0 => UNMEASURED_VIDEO_BPS,
                    bps => bps,
                })
                .collect();
            let temporal_bps = live
                .first()
                .and_then(|&lowest| t.layers.get(lowest))
                .map(|l| temporal_costs(&l.temporal_bitrate))
                .unwrap_or_default();
            let last_voice_at = self
                .participants
                .get(&t.publisher)
                .and_then(|publisher| publisher.last_voice_at);
            candidates.push(Candidate {
                track: *track_id,
                layer_bps,
                temporal_bps,
                current_temporal: sub.temporal_cap,
                live,
                wanted,
                current: (!sub.paused).then_some(sub.layer.unwrap_or(sub.target)),
                paused_since: sub.paused_since.filter(|_| sub.paused),
                short_since: sub.short_since,
                last_voice_at,
            });
        }
        // Those speaking now (voice within SPEAKING_WINDOW) first, then the rest, each
        // group in the order of subscription: a stable order, so that a pause does not
        // move from track to track as everyone's last word changes by milliseconds.
        candidates.sort_by_key(|c| {
            c.last_voice_at
                .is_none_or(|t| now.saturating_duration_since(t) >= SPEAKING_WINDOW)
        });

        let desired: u64 = audio_bps
            + candidates
                .iter()
                .map(|c| c.layer_bps.get(c.wanted).copied().unwrap_or(0))
                .sum::<u64>();
        // Without an estimate (no feedback yet, or a client without transport-cc)
        // nothing is limited; every track gets what its tile asks for. With one, a
        // share is kept free for keyframes (several times a delta frame), retransmissions
        // and probes, which come on top of the encodings' average rates.
        let mut budget = estimate.map_or(u64::MAX, |e| {
            (e / 100 * ALLOCATED_SHARE_PERCENT).saturating_sub(audio_bps)
        });
        // FEC adds one packet per `fec_interval` video packets: video gets the rest
        let fec_share = |video_bps: u64| {
            if fec_on {
                video_bps / u64::from(fec_interval.max(1))
            } else {
                0
            }
        };
        if fec_on && budget != u64::MAX {
            let interval = u64::from(fec_interval);
            budget = budget / (interval + 1) * interval;
        }
        let desired = desired + fec_share(desired.saturating_sub(audio_bps));
        let lossy = p_loss.is_some_and(|f| f >= PAUSE_LOSS_FRACTION);
        let mut choice: Vec<Option<Step>> = Vec::with_capacity(candidates.len());
        let mut shortfalls: Vec<bool> = Vec::with_capacity(candidates.len());
        for (index, c) in candidates.iter().enumerate() {
            let lowest = c.live.first().copied().unwrap_or(0).min(c.wanted);
            let whole = Step {
                layer: lowest,
                temporal: ALL_TEMPORAL_LAYERS,
            };
            // the cheapest way to keep it flowing: its base temporal layer alone, if the
            // publisher sends temporal layers
            let cheapest = if c.temporal_bps.is_empty() {
                whole
            } else {
                Step {
                    layer: lowest,
                    temporal: 0,
                }
            };
            // A paused track comes back only after a hold and with a margin, so a track
            // near the edge is not paused and resumed (and keyframed) every few seconds.
            let (fits, pick) = match c.paused_since {
                Some(since) => (
                    now.saturating_duration_since(since) >= RESUME_HOLD
                        && c.cost(cheapest)
                            .saturating_mul(100 + STEP_UP_MARGIN_PERCENT)
                            / 100
                            <= budget,
                    cheapest,
                ),
                None if c.cost(whole) <= budget => (true, whole),
                // a lower frame rate before a pause
                None => (c.cost(cheapest) <= budget, cheapest),
            };
            // A shortfall must last before a flowing track is paused: an estimate that
            // dips for a moment (a receiver starved of CPU looks like a queue) moves the
            // track to its lowest encoding at once but does not freeze it.
            let wait_over = c
                .short_since
                .is_some_and(|t| now.saturating_duration_since(t) >= PAUSE_AFTER);
            // ... and only on a link that is losing packets: an estimate that stays low
            // on a lossless path is a receiver too busy to report in time (its late
            // feedback reads as a queue), which a pause does not help.
            let keep = fits || index == 0 || (c.paused_since.is_none() && !(wait_over && lossy));
            shortfalls.push(!fits && index != 0);
            if keep {
                budget = budget.saturating_sub(c.cost(pick));
                choice.push(Some(pick));
            } else {
                choice.push(None);
            }
        }
        // move up one step at a time (a temporal layer, then an encoding), most recent
        // speaker first
        let mut upgraded = true;
        while upgraded {
            upgraded = false;
            for (c, chosen) in candidates.iter().zip(choice.iter_mut()) {
                let Some(current) = *chosen else {
                    continue;
                };
                let Some(next) = c.next_step(current) else {
                    continue;
                };
                let extra = c.cost(next).saturating_sub(c.cost(current));
                // moving up needs a margin; keeping what it has does not
                let has_it = if next.layer == current.layer {
                    c.current_temporal >= next.temporal
                } else {
                    c.current.is_some_and(|l| l >= next.layer)
                };
                let margin = if has_it {
                    0
                } else {
                    extra / 100 * STEP_UP_MARGIN_PERCENT
                };
                if extra + margin <= budget {
                    budget -= extra;
                    *chosen = Some(next);
                    upgraded = true;
                }
            }
        }

        let mut allocated_video = 0u64;
        let mut paused = 0usize;
        let mut reduced = 0usize;
        let mut changes = Vec::new();
        for ((c, chosen), short) in candidates.iter().zip(&choice).zip(&shortfalls) {
            let Some(t) = self.tracks.get_mut(&c.track) else {
                continue;
            };
            let publisher = t.publisher;
            let Some(sub) = t.subscriptions.iter_mut().find(|s| s.subscriber == id) else {
                continue;
            };
            sub.short_since = if *short {
                sub.short_since.or(Some(now))
            } else {
                None
            };
            match chosen {
                Some(step) => {
                    let layer = &step.layer;
                    allocated_video += c.cost(*step);
                    sub.temporal_cap = if estimate.is_some() {
                        step.temporal
                    } else {
                        ALL_TEMPORAL_LAYERS
                    };
                    if sub.temporal_cap != ALL_TEMPORAL_LAYERS {
                        reduced += 1;
                    }
                    if sub.paused {
                        debug!(subscriber = id.0, track = c.track.0, "video resumed");
                        sub.paused = false;
                        changes.push((c.track, publisher, false));
                    }
                    // without an estimate nothing is capped but the tile's size; with one,
                    // a lower cap applies at once and a higher one at most one encoding
                    // per UPGRADE_INTERVAL, so a swinging estimate does not switch (and
                    // keyframe) encodings every half second
                    let cap = if estimate.is_some() {
                        *layer
                    } else {
                        usize::MAX
                    };
                    if cap < sub.bandwidth_layer {
                        sub.bandwidth_layer = cap;
                        sub.upgraded_at = Some(now);
                    } else if cap > sub.bandwidth_layer {
                        let due = sub
                            .upgraded_at
                            .is_none_or(|t| now.saturating_duration_since(t) >= UPGRADE_INTERVAL);
                        if estimate.is_none() {
                            sub.bandwidth_layer = cap;
                        } else if due {
                            sub.bandwidth_layer = sub.bandwidth_layer.saturating_add(1).min(cap);
                            sub.upgraded_at = Some(now);
                        }
                    };
                }
                None => {
                    paused += 1;
                    if !sub.paused {
                        debug!(
                            subscriber = id.0,
                            track = c.track.0,
                            "video paused: no room in the estimate"
                        );
                        sub.paused = true;
                        sub.paused_since = Some(now);
                        sub.layer = None;
                        self.stats.video_pauses += 1;
                        changes.push((c.track, publisher, true));
                    }
                }
            }
        }
        for c in &candidates {
            if let Some(t) = self.tracks.get_mut(&c.track) {
                t.retarget_subscriber(id, now, silence);
            }
        }
        for (track, publisher, paused) in changes {
            if !paused {
                // it resumes from a keyframe of the encoding chosen for it
                if let Some(t) = self.tracks.get_mut(&track) {
                    if let Some(layer) = t
                        .subscriptions
                        .iter()
                        .find(|s| s.subscriber == id)
                        .map(|s| s.target)
                    {
                        t.request_keyframe(layer);
                    }
                }
            }
            self.push_event(RouterEvent::VideoPaused {
                subscriber: id,
                publisher,
                paused,
                reason: PauseReason::Bandwidth,
            });
        }
        let allocated = audio_bps + allocated_video + fec_share(allocated_video);
        if let Some(p) = self.participants.get_mut(&id) {
            if p.link.fec_interval != fec_interval {
                debug!(
                    subscriber = id.0,
                    fec_interval,
                    loss = p_loss,
                    "video FEC changed"
                );
                if fec_interval == 0 {
                    p.link.fec.clear();
                }
            }
            p.link.fec_interval = fec_interval;
            p.link.fec_quiet_since = fec_quiet_since;
            if p.link.allocated_bps != allocated
                || p.link.paused_tracks != paused
                || p.link.reduced_frame_rate_tracks != reduced
            {
                debug!(
                    subscriber = id.0,
                    estimate_bps = estimate,
                    allocated_bps = allocated,
                    desired_bps = desired,
                    paused_tracks = paused,
                    reduced_frame_rate_tracks = reduced,
                    "allocation"
                );
            }
            p.link.allocated_bps = allocated;
            p.link.desired_bps = desired;
            p.link.paused_tracks = paused;
            p.link.reduced_frame_rate_tracks = reduced;
            if p.link.red_distance != red_distance {
                debug!(
                    subscriber = id.0,
                    red_distance,
                    loss = p_loss,
                    "audio redundancy changed"
                );
            }
            p.link.red_distance = red_distance;
            p.link.red_quiet_since = red_quiet_since;
            if !candidates.is_empty() {
                p.link.bwe.set_desired_bitrate(now, Some(desired));
            }
        }
    }

    /// Asks each publisher that sends its camera as one encoding (no simulcast to choose
    /// from) for the rate its subscribers can take: the lowest of their estimates (the
    /// share allocated to video), never below `publisher_bitrate_floor_bps`.
    pub(crate) fn limit_single_encoding_publishers(&mut self) {
        if !self.config.bandwidth_allocation {
            return;
        }
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            ..
        } = self;
        for track in tracks.values() {
            if track.kind != Kind::Video || track.layers.len() != 1 {
                continue;
            }
            let Some(ssrc) = track.layers.first().and_then(|l| l.ssrc) else {
                continue;
            };
            let lowest = track
                .subscriptions
                .iter()
                .filter_map(|s| participants.get(&s.subscriber)?.link.estimate_bps())
                .min();
            let Some(lowest) = lowest else {
                continue;
            };
            let bitrate =
                (lowest / 100 * ALLOCATED_SHARE_PERCENT).max(config.publisher_bitrate_floor_bps);
            let mut buf = outbox.buffer();
            sluice_rtp::write_remb(config.rtcp_sender_ssrc, bitrate, &[ssrc], &mut buf);
            stats.remb_sent += 1;
            outbox.push(track.publisher, OutputKind::Rtcp, buf, stats);
        }
    }

    /// Starts probe clusters the estimators ask for and sends the padding due by `now`.
    pub(crate) fn send_probes(&mut self, now: Instant) {
        let Router {
            config,
            participants,
            tracks,
            outbox,
            stats,
            epoch,
            ..
        } = self;
        let send_time = abs_send_time(now.saturating_duration_since(epoch.unwrap_or(now)));
        let probing = config.bandwidth_allocation;
        for (&id, p) in participants.iter_mut() {
            if p.link.bwe.poll_timeout().is_some_and(|t| t <= now) {
                p.link.bwe.handle_timeout(now);
            }
            if p.link.probe.is_none() {
                if let Some(cluster) = p.link.bwe.poll_probe().filter(|_| probing) {
                    p.link.probe = Some(ActiveProbe {
                        cluster,
                        sent_bytes: 0,
                        sent_packets: 0,
                        next_at: now,
                    });
                }
            }
            let Some(mut probe) = p.link.probe else {
                continue;
            };
            // padding goes on an RTX stream announced to this subscriber
            let rtx = p.subscribed.iter().find_map(|t| {
                let sub = tracks
                    .get(t)?
                    .subscriptions
                    .iter()
                    .find(|s| s.subscriber == id && s.rtx_ssrc.is_some())?;
                let pt = sub.payload_types.first().copied().unwrap_or(PT_VP8);
                Some((*t, sub.rtx_ssrc?, rtx_payload_type(pt)?))
            });
            let sub = rtx.and_then(|(t, _, _)| {
                tracks
                    .get_mut(&t)?
                    .subscriptions
                    .iter_mut()
                    .find(|s| s.subscriber == id)
            });
            let (Some((_, rtx_ssrc, rtx_pt)), Some(sub)) = (rtx, sub) else {
                p.link.probe = None; // nothing to pad with: the estimate grows by AIMD
                continue;
            };
            let packet_bytes = 12 + 8 + PROBE_PADDING_BYTES + SRTP_OVERHEAD_BYTES;
            let interval_us = (packet_bytes as u64 * 8 * 1_000_000)
                .checked_div(probe.cluster.bitrate_bps.max(1))
                .unwrap_or(1_000);
            let mut sent_now = 0;
            while probe.next_at <= now && sent_now < MAX_PROBE_PACKETS_PER_TIMEOUT {
                let mut buf = outbox.buffer();
                write_padding(&mut buf, rtx_pt, sub.rtx_seq, rtx_ssrc, &send_time);
                sub.rtx_seq = sub.rtx_seq.wrapping_add(1);
                let seq = p.next_transport_seq;
                stamp_transport_seq(p, &mut buf);
                p.link.bwe.on_packet_sent(
                    now,
                    seq,
                    buf.len() + SRTP_OVERHEAD_BYTES,
                    Some(probe.cluster.id),
                );
                probe.sent_bytes += buf.len() + SRTP_OVERHEAD_BYTES;
                probe.sent_packets += 1;
                sent_now += 1;
                stats.probe_packets_sent += 1;
                outbox.push(id, OutputKind::Rtp, buf, stats);
                probe.next_at += Duration::from_micros(interval_us);
            }
            let done = probe.sent_bytes >= probe.cluster.min_bytes
                && probe.sent_packets >= probe.cluster.min_packets;
            p.link.probe = (!done).then_some(probe);
        }
    }
}

/// A padding-only RTP packet on an RTX stream (RFC 3550 padding, no payload): what
/// browsers send to probe, ignored by the receiver's decoder but counted by its
/// transport-cc feedback. Carries the transport-cc extension (stamped later) and
/// abs-send-time.
fn write_padding(buf: &mut Vec<u8>, pt: u8, seq: u16, ssrc: u32, send_time: &[u8; 3]) {
    buf.clear();
    buf.extend_from_slice(&[0x80 | 0x20 | 0x10, pt & 0x7F]);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
    // one-byte extensions: transport-cc (2 bytes), abs-send-time (3 bytes), 1 byte pad
    buf.extend_from_slice(&[0xBE, 0xDE, 0, 2]);
    buf.extend_from_slice(&[(EXT_TRANSPORT_CC << 4) | 1, 0, 0]);
    buf.extend_from_slice(&[(EXT_ABS_SEND_TIME << 4) | 2]);
    buf.extend_from_slice(send_time);
    buf.push(0);
    buf.resize(buf.len() + PROBE_PADDING_BYTES - 1, 0);
    buf.push(PROBE_PADDING_BYTES as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redundancy_rises_with_loss_at_once_and_falls_only_after_a_quiet_spell() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let on = Some(0.02);
        assert_eq!(red_decision(None, Some(0.5), 0, None, t0), (0, None));
        assert_eq!(red_decision(on, Some(0.01), 0, None, t0), (0, None));
        assert_eq!(red_decision(on, Some(0.03), 0, None, t0), (1, None));
        assert_eq!(red_decision(on, Some(0.15), 1, None, t0), (2, None));
        // the loss falls: two frames stay until it has been lower for 10 s
        let (d, quiet) = red_decision(on, Some(0.0), 2, None, at(1));
        assert_eq!((d, quiet), (2, Some(at(1))));
        assert_eq!(red_decision(on, Some(0.03), 2, quiet, at(5)), (2, quiet));
        assert_eq!(red_decision(on, Some(0.03), 2, quiet, at(11)), (1, None));
        // threshold 0: always on, where accepted
        assert_eq!(red_decision(Some(0.0), None, 0, None, t0), (1, None));
    }
}
