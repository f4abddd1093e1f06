//! Speakers and last-N on virtual time: three publishers (microphone with RFC 6464 audio
//! levels, camera) and one viewer in a room whose last-N is 2. The viewer must receive
//! the cameras of the two most recent speakers only, the room's dominant speaker must
//! follow who talks, and when the silent one starts speaking its camera must reach the
//! viewer within a second while the least recent speaker's stops.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_sfu::{
    Kind, OutputKind, ParticipantId, PauseReason, Router, RouterConfig, RouterEvent,
    SubscriptionSpec, TrackSpec,
};

const PUBLISHERS: [ParticipantId; 3] = [ParticipantId(1), ParticipantId(2), ParticipantId(3)];
const VIEWER: ParticipantId = ParticipantId(9);
/// The SSRC the viewer receives each publisher's camera on.
fn out_ssrc(publisher: usize) -> u32 {
    0xB0 + publisher as u32
}

struct Room {
    router: Router,
    now: Instant,
    tick: u32,
    /// Which publishers speak now.
    speaking: [bool; 3],
    /// Video packets delivered to the viewer per publisher, since the last reset.
    delivered: [u32; 3],
    /// Audio packets delivered to the viewer per publisher, since the last reset.
    audio_delivered: [u32; 3],
    events: Vec<(Instant, RouterEvent)>,
    key_wanted: [bool; 3],
}

impl Room {
    fn new(last_n: usize) -> Self {
        Self::with_config(RouterConfig {
            last_n,
            ..RouterConfig::default()
        })
    }

    fn with_config(config: RouterConfig) -> Self {
        let mut router = Router::new(config);
        let mut tracks = Vec::new();
        for (i, &p) in PUBLISHERS.iter().enumerate() {
            router.add_participant("room", p).unwrap();
            let mic = TrackSpec {
                ssrc: Some(0xA0 + i as u32),
                ..TrackSpec::new("0", Kind::Audio)
            };
            let cam = TrackSpec {
                ssrc: Some(0x100 + i as u32),
                ..TrackSpec::new("1", Kind::Video)
            };
            tracks.push((
                router.publish(p, mic).unwrap(),
                router.publish(p, cam).unwrap(),
            ));
        }
        router.add_participant("room", VIEWER).unwrap();
        for (i, (mic, cam)) in tracks.into_iter().enumerate() {
            router
                .subscribe(VIEWER, mic, SubscriptionSpec::new(0xD0 + i as u32))
                .unwrap();
            router
                .subscribe(VIEWER, cam, SubscriptionSpec::new(out_ssrc(i)))
                .unwrap();
        }
        Self {
            router,
            now: Instant::now(),
            tick: 0,
            speaking: [false; 3],
            delivered: [0; 3],
            audio_delivered: [0; 3],
            events: Vec::new(),
            key_wanted: [true; 3],
        }
    }

    /// Runs `duration` in 10 ms steps: audio every 20 ms, a video frame every 40 ms.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += Duration::from_millis(10);
            self.tick += 1;
            let now = self.now;
            for (i, &p) in PUBLISHERS.iter().enumerate() {
                if self.tick % 2 == 0 {
                    let level = if self.speaking[i] { 30 } else { 127 };
                    let seq = (self.tick / 2) as u16;
                    let audio = Rtp::new(111, 0xA0 + i as u32, seq, 960 * self.tick / 2, OPUS)
                        .ext(4, &[0x80 | level])
                        .build();
                    self.router.handle_rtp(now, p, &audio);
                }
                if self.tick % 4 == 0 {
                    let key = std::mem::take(&mut self.key_wanted[i]);
                    let seq = (self.tick / 4) as u16;
                    let payload = if key { VP8_KEYFRAME } else { VP8_DELTA };
                    let video =
                        Rtp::new(96, 0x100 + i as u32, seq, 3600 * self.tick / 4, payload).build();
                    self.router.handle_rtp(now, p, &video);
                }
            }
            let mut outputs = drain(&mut self.router);
            outputs.extend(
                run_timers(&mut self.router, now)
                    .into_iter()
                    .map(|(_, o)| o),
            );
            for out in outputs {
                if out.to == VIEWER && out.kind == OutputKind::Rtp {
                    let view = RtpView::of(&out.data);
                    if let Some(i) = (0..3).find(|&i| out_ssrc(i) == view.ssrc) {
                        self.delivered[i] += 1;
                    }
                    if let Some(i) = (0..3).find(|&i| 0xD0 + i as u32 == view.ssrc) {
                        self.audio_delivered[i] += 1;
                    }
                } else if out.kind == OutputKind::Rtcp {
                    // any keyframe request: the publisher answers with a keyframe
                    if let Some(i) = PUBLISHERS.iter().position(|&p| p == out.to) {
                        self.key_wanted[i] = true;
                    }
                }
            }
            while let Some(event) = self.router.poll_event() {
                self.events.push((now, event));
            }
        }
    }

    fn measure(&mut self, duration: Duration) -> [u32; 3] {
        self.delivered = [0; 3];
        self.run(duration);
        self.delivered
    }
}

#[test]
fn the_viewer_gets_the_cameras_of_the_two_most_recent_speakers_and_follows_a_new_one_within_a_second(
) {
    let mut room = Room::new(2);
    // the first and second publishers take turns; the third is silent
    room.speaking = [true, false, false];
    room.run(Duration::from_secs(2));
    room.speaking = [false, true, false];
    room.run(Duration::from_secs(2));
    let got = room.measure(Duration::from_secs(2));
    println!("first and second spoke: video packets to the viewer {got:?}");
    assert!(got[0] > 20 && got[1] > 20, "{got:?}");
    assert_eq!(
        got[2], 0,
        "the silent publisher's camera is left out: {got:?}"
    );
    assert_eq!(room.router.dominant_speaker("room"), Some(PUBLISHERS[1]));
    assert!(room.events.iter().any(|(_, e)| *e
        == RouterEvent::VideoPaused {
            subscriber: VIEWER,
            publisher: PUBLISHERS[2],
            paused: true,
            reason: PauseReason::LastN,
        }));

    // the third starts speaking (alone): its camera arrives within a second, and the
    // least recent speaker's (the first) stops
    room.speaking = [false, false, true];
    let started = room.now;
    let mut arrived_after = None;
    for _ in 0..100 {
        room.delivered = [0; 3];
        room.run(Duration::from_millis(10));
        if room.delivered[2] > 0 {
            arrived_after = Some(room.now - started);
            break;
        }
    }
    let arrived_after = arrived_after.expect("the new speaker's camera arrives");
    println!("new speaker's camera after {arrived_after:?}");
    assert!(arrived_after <= Duration::from_secs(1), "{arrived_after:?}");
    room.run(Duration::from_millis(500));
    let got = room.measure(Duration::from_secs(2));
    println!("third speaks: video packets to the viewer {got:?}");
    assert_eq!(
        got[0], 0,
        "the least recent speaker is left out now: {got:?}"
    );
    assert!(got[1] > 20 && got[2] > 20, "{got:?}");
    assert_eq!(room.router.dominant_speaker("room"), Some(PUBLISHERS[2]));
    let dominant: Vec<ParticipantId> = room
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            RouterEvent::DominantSpeaker { participant, .. } => Some(*participant),
            _ => None,
        })
        .collect();
    assert_eq!(
        dominant,
        PUBLISHERS.to_vec(),
        "each became dominant once, in turn"
    );
}

#[test]
fn without_last_n_every_camera_flows() {
    let mut room = Room::new(0);
    room.speaking = [true, false, false];
    room.run(Duration::from_secs(2));
    let got = room.measure(Duration::from_secs(2));
    assert!(got.iter().all(|&n| n > 20), "{got:?}");
    assert_eq!(room.router.dominant_speaker("room"), Some(PUBLISHERS[0]));
}

#[test]
fn with_audio_last_n_the_viewer_hears_the_most_recent_speaker_only_and_a_new_one_at_once() {
    let mut room = Room::with_config(RouterConfig {
        audio_last_n: 1,
        ..RouterConfig::default()
    });
    room.speaking = [false, true, false];
    room.run(Duration::from_secs(2));
    room.audio_delivered = [0; 3];
    room.run(Duration::from_secs(1));
    let heard = room.audio_delivered;
    assert_eq!(heard[0] + heard[2], 0, "only the speaker: {heard:?}");
    assert!(heard[1] >= 45, "{heard:?}");
    // video is not limited
    assert!(room.delivered.iter().all(|&n| n > 0));
    // someone else speaks: heard within a selection interval and a half
    room.speaking = [true, false, false];
    room.run(Duration::from_millis(800));
    room.audio_delivered = [0; 3];
    room.run(Duration::from_secs(1));
    let heard = room.audio_delivered;
    assert!(
        heard[0] >= 45 && heard[1] == 0 && heard[2] == 0,
        "{heard:?}"
    );
}

#[test]
fn a_track_exempt_from_last_n_reaches_the_viewer_whoever_speaks() {
    let mut room = Room::new(1);
    // the silent third publisher's video stands for a screen share
    let screen = room.router.published_tracks(PUBLISHERS[2])[1];
    room.router.set_last_n_exempt(screen, true).unwrap();
    room.speaking = [true, false, false];
    room.run(Duration::from_secs(2));
    let got = room.measure(Duration::from_secs(2));
    println!("first speaks, last-N 1, third exempt: video packets {got:?}");
    assert!(got[0] > 20, "the speaker's camera: {got:?}");
    assert_eq!(got[1], 0, "the silent second is left out: {got:?}");
    assert!(got[2] > 20, "the exempt track flows: {got:?}");
}
