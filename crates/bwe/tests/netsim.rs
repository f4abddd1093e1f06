//! The estimator and pacer against a simulated bottleneck, on virtual time.
//!
//! A sender produces 30 fps video (and 50 pps audio) at `min(estimate, app limit)`,
//! paces it, and stamps each packet with a transport-wide sequence number. The packets
//! cross a `sluice_netsim::Link` with a rate limit, a tail-drop queue of 100 ms at the
//! rate and 25 ms of propagation delay. The receiver records arrivals in a
//! `TwccRecorder` and sends feedback every 50 ms over a 25 ms reverse link. Every run
//! is seeded and replays identically.
//!
//! These are the acceptance tests of the estimator; each prints what it measured
//! (`cargo test -p sluice-bwe --test netsim -- --nocapture`), and docs/congestion.md
//! holds the numbers. The last test runs the same scenarios with a constant estimate
//! and checks that they fail: the checks measure the estimator, not the harness.

use std::time::{Duration, Instant};

use sluice_bwe::pacer::{Pacer, PacerConfig, PacerOutput, Priority};
use sluice_bwe::{Bwe, BweConfig, ProbeCluster};
use sluice_netsim::{Link, LinkConfig};
use sluice_rtp::TwccRecorder;

const ONE_WAY: Duration = Duration::from_millis(25);
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const AUDIO_BYTES: usize = 100;
const MAX_PACKET: usize = 1200;
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// What the application would send if the path allowed it.
const APP_LIMIT_BPS: u64 = 5_000_000;

/// The estimator under test, so the harness can also run a deliberately broken one.
trait Estimator {
    fn on_packet_sent(&mut self, now: Instant, seq: u16, size: usize, probe: Option<u32>);
    fn on_feedback(&mut self, now: Instant, datagram: &[u8]);
    fn estimate_bps(&self) -> u64;
    fn poll_probe(&mut self) -> Option<ProbeCluster>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn set_desired(&mut self, now: Instant, bps: u64);
}

impl Estimator for Bwe {
    fn on_packet_sent(&mut self, now: Instant, seq: u16, size: usize, probe: Option<u32>) {
        Bwe::on_packet_sent(self, now, seq, size, probe);
    }
    fn on_feedback(&mut self, now: Instant, datagram: &[u8]) {
        self.on_feedback_bytes(now, datagram)
            .expect("the recorder's feedback decodes");
    }
    fn estimate_bps(&self) -> u64 {
        Bwe::estimate_bps(self)
    }
    fn poll_probe(&mut self) -> Option<ProbeCluster> {
        Bwe::poll_probe(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Bwe::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Bwe::handle_timeout(self, now);
    }
    fn set_desired(&mut self, now: Instant, bps: u64) {
        self.set_desired_bitrate(now, Some(bps));
    }
}

/// A "estimator" that ignores feedback.
struct Constant(u64);

impl Estimator for Constant {
    fn on_packet_sent(&mut self, _: Instant, _: u16, _: usize, _: Option<u32>) {}
    fn on_feedback(&mut self, _: Instant, _: &[u8]) {}
    fn estimate_bps(&self) -> u64 {
        self.0
    }
    fn poll_probe(&mut self) -> Option<ProbeCluster> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn set_desired(&mut self, _: Instant, _: u64) {}
}

/// One phase of a scenario: from `at`, the bottleneck runs at `rate_bps`.
#[derive(Debug, Clone, Copy)]
struct Phase {
    at: Duration,
    rate_bps: u64,
    /// Bottleneck buffer; `None` keeps the previous phase's buffer (a router's buffer
    /// is a number of bytes; it does not shrink when the rate drops).
    queue_bytes: Option<usize>,
    loss: f64,
    jitter: Duration,
    /// Share of datagrams held back 10 ms (so later ones overtake them).
    reorder: f64,
    /// A bulk TCP-like flow shares the bottleneck during this phase.
    tcp: bool,
}

fn phase(at_s: f64, rate_bps: u64) -> Phase {
    Phase {
        at: Duration::from_secs_f64(at_s),
        rate_bps,
        queue_bytes: Some(queue_for(rate_bps)),
        loss: 0.0,
        jitter: Duration::ZERO,
        reorder: 0.0,
        tcp: false,
    }
}

/// 100 ms at the bottleneck rate.
fn queue_for(rate_bps: u64) -> usize {
    (rate_bps / 8 / 10) as usize
}

/// One sample of the run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: Duration,
    estimate_bps: u64,
    capacity_bps: u64,
    /// Largest queueing delay of a packet delivered since the previous sample.
    queue_delay: Duration,
    /// Cumulative link counters.
    link_sent: u64,
    link_dropped: u64,
}

struct Run {
    samples: Vec<Sample>,
    pacer_late_drops: u64,
    tcp_delivered_bytes: u64,
}

/// Datagram markers: the first byte says whose a datagram is.
const MEDIA: u8 = 0;
const TCP: u8 = 1;
const TCP_SEGMENT: usize = 1200;
const TCP_RTO: Duration = Duration::from_secs(1);

/// A bulk sender in the manner of TCP Reno, enough to compete for a bottleneck: a
/// congestion window in segments, +1 segment per window of acks, halved at most once a
/// round trip when the receiver reports a gap, back to 2 after a second without acks.
/// It never retransmits (only its share of the link matters here).
struct TcpFlow {
    cwnd: f64,
    next_seq: u64,
    acked: u64,
    last_cut: Option<Instant>,
    last_ack: Option<Instant>,
    /// Receiver side: next sequence number expected, bytes delivered.
    expected: u64,
    delivered_bytes: u64,
    /// Acks waiting to go out on the reverse link.
    acks: Vec<Vec<u8>>,
}

impl TcpFlow {
    fn new() -> Self {
        Self {
            cwnd: 2.0,
            next_seq: 0,
            acked: 0,
            last_cut: None,
            last_ack: None,
            expected: 0,
            delivered_bytes: 0,
            acks: Vec::new(),
        }
    }

    /// Segments the window allows now.
    fn poll_segment(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(last) = self.last_ack {
            if self.next_seq > self.acked && now - last >= TCP_RTO {
                // Timeout: everything outstanding is lost.
                self.cwnd = 2.0;
                self.acked = self.next_seq;
                self.last_ack = Some(now);
            }
        }
        if (self.next_seq - self.acked) as f64 >= self.cwnd.floor() {
            return None;
        }
        self.last_ack.get_or_insert(now);
        let mut d = vec![0u8; TCP_SEGMENT];
        d[0] = TCP;
        d[1..9].copy_from_slice(&self.next_seq.to_be_bytes());
        self.next_seq += 1;
        Some(d)
    }

    fn rto_at(&self) -> Option<Instant> {
        (self.next_seq > self.acked)
            .then_some(self.last_ack)
            .flatten()
            .map(|t| t + TCP_RTO)
    }

    /// The receiver got a segment: cumulative ack, flagging a gap.
    fn on_segment(&mut self, d: &[u8]) {
        let seq = u64::from_be_bytes(d[1..9].try_into().unwrap());
        self.delivered_bytes += d.len() as u64;
        let gap = seq > self.expected;
        self.expected = self.expected.max(seq + 1);
        let mut ack = vec![0u8; 40];
        ack[0] = TCP;
        ack[1..9].copy_from_slice(&self.expected.to_be_bytes());
        ack[9] = u8::from(gap);
        self.acks.push(ack);
    }

    /// The sender got an ack.
    fn on_ack(&mut self, now: Instant, d: &[u8]) {
        let upto = u64::from_be_bytes(d[1..9].try_into().unwrap());
        let newly = upto.saturating_sub(self.acked);
        self.acked = self.acked.max(upto);
        self.last_ack = Some(now);
        let rtt = Duration::from_millis(100);
        if d[9] == 1 && self.last_cut.is_none_or(|t| now - t >= rtt) {
            self.cwnd = (self.cwnd / 2.0).max(2.0);
            self.last_cut = Some(now);
        } else {
            self.cwnd += newly as f64 / self.cwnd;
        }
    }
}

impl Run {
    /// First time at or after `from` when `pred` holds.
    fn first(&self, from: Duration, pred: impl Fn(&Sample) -> bool) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|s| s.t >= from)
            .find(|s| pred(s))
            .map(|s| s.t)
    }

    fn between(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.t >= from && s.t < to)
    }

    /// Share of datagrams the link dropped between `from` and `to`.
    fn link_loss(&self, from: Duration, to: Duration) -> f64 {
        let a = self.samples.iter().find(|s| s.t >= from);
        let b = self.samples.iter().rev().find(|s| s.t < to);
        match (a, b) {
            (Some(a), Some(b)) if b.link_sent > a.link_sent => {
                (b.link_dropped - a.link_dropped) as f64 / (b.link_sent - a.link_sent) as f64
            }
            _ => 0.0,
        }
    }

    fn mean_estimate(&self, from: Duration, to: Duration) -> f64 {
        let v: Vec<_> = self
            .between(from, to)
            .map(|s| s.estimate_bps as f64)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
}

fn forward_config(p: &Phase, previous_queue: usize) -> LinkConfig {
    LinkConfig {
        loss: p.loss,
        jitter: p.jitter,
        reorder: p.reorder,
        reorder_delay: Duration::from_millis(10),
        ..LinkConfig::throttled(ONE_WAY, p.rate_bps, p.queue_bytes.unwrap_or(previous_queue))
    }
}

/// Drives sender, links and receiver on virtual time until `duration`.
fn simulate(est: &mut dyn Estimator, phases: &[Phase], duration: Duration, seed: u64) -> Run {
    let t0 = Instant::now();
    let first = phases.first().copied().expect("a phase");
    let mut queue_bytes = first.queue_bytes.unwrap_or(queue_for(first.rate_bps));
    let mut fwd = Link::new(forward_config(&first, queue_bytes), seed, t0);
    let mut rev = Link::new(LinkConfig::delayed(ONE_WAY), seed ^ 0x5EED, t0);
    let mut next_phase = 1;
    let mut capacity = first.rate_bps;

    let mut pacer: Pacer<(Priority, usize)> = Pacer::new(PacerConfig::default());
    let mut recorder = TwccRecorder::default();
    let mut feedback = Vec::new();
    let mut seq: u16 = 0;
    let mut carry_bits = 0.0f64;

    let mut now = t0;
    let mut next_frame = t0;
    let mut next_audio = t0;
    let mut next_feedback = t0 + FEEDBACK_INTERVAL;
    let mut next_sample = t0;
    let mut max_queue_delay = Duration::ZERO;
    let mut samples = Vec::new();
    let mut tcp = TcpFlow::new();
    let mut tcp_on = first.tcp;
    est.set_desired(t0, APP_LIMIT_BPS);

    let end = t0 + duration;
    while now < end {
        // Phase changes.
        while let Some(p) = phases.get(next_phase).filter(|p| t0 + p.at <= now) {
            queue_bytes = p.queue_bytes.unwrap_or(queue_bytes);
            fwd.set_config(forward_config(p, queue_bytes));
            capacity = p.rate_bps;
            tcp_on = p.tcp;
            next_phase += 1;
        }
        // Deliveries: media to the receiver, feedback to the sender.
        while let Some(d) = fwd.poll_deliver(now) {
            if d[0] == TCP {
                tcp.on_segment(&d);
                continue;
            }
            let seq = u16::from_be_bytes([d[1], d[2]]);
            let sent_ns = u64::from_be_bytes(d[3..11].try_into().unwrap());
            recorder.record(seq, now);
            let one_way = now - (t0 + Duration::from_nanos(sent_ns));
            let wire = Duration::from_secs_f64(d.len() as f64 * 8.0 / capacity as f64);
            let queueing = one_way.saturating_sub(ONE_WAY + wire);
            max_queue_delay = max_queue_delay.max(queueing);
        }
        while let Some(d) = rev.poll_deliver(now) {
            if d[0] == TCP {
                tcp.on_ack(now, &d);
            } else {
                est.on_feedback(now, &d);
            }
        }
        for ack in tcp.acks.drain(..) {
            rev.send(now, ack);
        }
        if tcp_on {
            while let Some(segment) = tcp.poll_segment(now) {
                fwd.send(now, segment);
            }
        }
        if now >= next_feedback {
            loop {
                feedback.clear();
                if !recorder.build_feedback(1, 2, &mut feedback) {
                    break;
                }
                rev.send(now, feedback.clone());
            }
            next_feedback += FEEDBACK_INTERVAL;
        }
        // Media: one frame at the rate the estimate allows, split into packets.
        if now >= next_frame {
            // Audio is budgeted first; video gets the rest of the estimate.
            let audio_bps = AUDIO_BYTES as f64 * 8.0 / AUDIO_INTERVAL.as_secs_f64();
            let rate = (est.estimate_bps().min(APP_LIMIT_BPS) as f64 - audio_bps).max(0.0);
            carry_bits += rate * FRAME_INTERVAL.as_secs_f64();
            let mut frame = (carry_bits / 8.0) as usize;
            carry_bits -= frame as f64 * 8.0;
            while frame > 0 {
                let size = frame.clamp(20, MAX_PACKET);
                pacer.enqueue(now, (Priority::Video, size), size, Priority::Video);
                frame = frame.saturating_sub(size);
            }
            next_frame += FRAME_INTERVAL;
        }
        if now >= next_audio {
            pacer.enqueue(
                now,
                (Priority::Audio, AUDIO_BYTES),
                AUDIO_BYTES,
                Priority::Audio,
            );
            next_audio += AUDIO_INTERVAL;
        }
        if est.poll_timeout().is_some_and(|t| t <= now) {
            est.handle_timeout(now);
        }
        while let Some(cluster) = est.poll_probe() {
            pacer.start_probe(now, cluster);
        }
        pacer.set_estimate(est.estimate_bps());
        while let Some(out) = pacer.poll_send(now) {
            let (size, probe) = match out {
                PacerOutput::Packet {
                    size_bytes,
                    probe_cluster,
                    ..
                } => (size_bytes, probe_cluster),
                PacerOutput::Padding {
                    size_bytes,
                    probe_cluster,
                } => (size_bytes, probe_cluster),
            };
            let mut datagram = vec![0u8; size.max(11)];
            datagram[0] = MEDIA;
            datagram[1..3].copy_from_slice(&seq.to_be_bytes());
            let sent_ns = (now - t0).as_nanos() as u64;
            datagram[3..11].copy_from_slice(&sent_ns.to_be_bytes());
            est.on_packet_sent(now, seq, datagram.len(), probe);
            fwd.send(now, datagram);
            seq = seq.wrapping_add(1);
        }
        if now >= next_sample {
            let stats = fwd.stats();
            samples.push(Sample {
                t: now - t0,
                estimate_bps: est.estimate_bps(),
                capacity_bps: capacity,
                queue_delay: max_queue_delay,
                link_sent: stats.sent,
                link_dropped: stats.dropped.total(),
            });
            max_queue_delay = Duration::ZERO;
            next_sample += SAMPLE_INTERVAL;
        }
        let phase_at = phases.get(next_phase).map(|p| t0 + p.at);
        let next = [
            Some(next_frame),
            Some(next_audio),
            Some(next_feedback),
            Some(next_sample),
            phase_at,
            pacer.poll_timeout(),
            est.poll_timeout(),
            fwd.poll_timeout(),
            rev.poll_timeout(),
            tcp_on.then(|| tcp.rto_at()).flatten(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end);
        // Every timer was just served, so each must now lie in the future; one that
        // does not is a busy loop in the code under test.
        assert!(
            next > now || next >= end,
            "a timer stays due after being served at {:?}",
            now - t0
        );
        now = next.min(end);
    }
    Run {
        samples,
        pacer_late_drops: pacer.stats().dropped_late_video,
        tcp_delivered_bytes: tcp.delivered_bytes,
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn bwe() -> Bwe {
    Bwe::new(BweConfig::default())
}

// ---- scenario checks, shared by the estimator tests and the negative control ----

const SEED: u64 = 0x5_1u64 << 32 | 0xC0FFEE;

/// 1 Mbit/s for 20 s: converged (70-100 %) within 5 s, under 2 % link loss after.
fn check_converges(est: &mut dyn Estimator) -> Result<String, String> {
    let cap = 1_000_000u64;
    let run = simulate(est, &[phase(0.0, cap)], Duration::from_secs(20), SEED);
    let within = |s: &Sample| s.estimate_bps >= cap * 7 / 10 && s.estimate_bps <= cap;
    let converged = run.first(Duration::ZERO, within);
    let after = converged.unwrap_or(Duration::from_secs(20));
    let loss = run.link_loss(after, Duration::from_secs(20));
    let mean = run.mean_estimate(Duration::from_secs(5), Duration::from_secs(20));
    let p95_queue = percentile(
        run.between(Duration::from_secs(5), Duration::from_secs(20))
            .map(|s| s.queue_delay)
            .collect(),
        0.95,
    );
    let report = format!(
        "1 Mbit/s: converged (70-100 %) at {}; link loss after {:.2} %; mean estimate 5-20 s {:.0} kbit/s ({:.0} %); p95 queueing {} ms; late video dropped by pacer {}",
        secs(converged),
        loss * 100.0,
        mean / 1000.0,
        mean / cap as f64 * 100.0,
        p95_queue.as_millis(),
        run.pacer_late_drops,
    );
    if converged.is_none_or(|t| t >= Duration::from_secs(5)) {
        return Err(format!("did not converge within 5 s: {report}"));
    }
    if loss >= 0.02 {
        return Err(format!("link loss over 2 % once converged: {report}"));
    }
    Ok(report)
}

/// 1 Mbit/s, then 3 Mbit/s at 20 s: estimate >= 70 % of 3 Mbit/s within 10 s.
fn check_rise(est: &mut dyn Estimator) -> Result<String, String> {
    let rise = Duration::from_secs(20);
    let run = simulate(
        est,
        &[phase(0.0, 1_000_000), phase(20.0, 3_000_000)],
        Duration::from_secs(40),
        SEED + 1,
    );
    let reached = run.first(rise, |s| s.estimate_bps >= 2_100_000);
    let took = reached.map(|t| t - rise);
    let mean = run.mean_estimate(Duration::from_secs(32), Duration::from_secs(40));
    let loss = run.link_loss(Duration::from_secs(32), Duration::from_secs(40));
    let report = format!(
        "1 -> 3 Mbit/s: >= 70 % after {}; mean estimate 32-40 s {:.0} kbit/s ({:.0} %); link loss 32-40 s {:.2} %",
        secs(took),
        mean / 1000.0,
        mean / 3_000_000.0 * 100.0,
        loss * 100.0
    );
    if took.is_none_or(|t| t > Duration::from_secs(10)) {
        return Err(format!("did not follow the rise within 10 s: {report}"));
    }
    Ok(report)
}

/// 1 Mbit/s, 3 Mbit/s from 10 s with a 100 ms (37.5 kB) buffer, then 500 kbit/s at
/// 20 s keeping that buffer (600 ms at the new rate): estimate <= 500 kbit/s within
/// 1 s, queueing delay under 100 ms within 3 s and staying there (10 s window).
fn check_drop(est: &mut dyn Estimator) -> Result<String, String> {
    let drop_at = Duration::from_secs(20);
    let mut low = phase(20.0, 500_000);
    low.queue_bytes = None;
    let run = simulate(
        est,
        &[phase(0.0, 1_000_000), phase(10.0, 3_000_000), low],
        Duration::from_secs(30),
        SEED + 2,
    );
    let backed_off = run
        .first(drop_at, |s| s.estimate_bps <= 500_000)
        .map(|t| t - drop_at);
    let peak_queue = run
        .between(drop_at, drop_at + Duration::from_secs(10))
        .map(|s| s.queue_delay)
        .max()
        .unwrap_or_default();
    // Last sample (after the drop) with queueing >= 100 ms: the delay is back under
    // 100 ms for good just after it.
    let last_high = run
        .between(drop_at, drop_at + Duration::from_secs(10))
        .filter(|s| s.queue_delay >= Duration::from_millis(100))
        .map(|s| s.t - drop_at)
        .max();
    let drained = last_high.map_or(Duration::ZERO, |t| t + SAMPLE_INTERVAL);
    let mean = run.mean_estimate(Duration::from_secs(25), Duration::from_secs(30));
    let report = format!(
        "3 -> 0.5 Mbit/s: estimate <= 500 kbit/s after {}; peak queueing {} ms; queueing < 100 ms for good after {:.2} s; mean estimate 25-30 s {:.0} kbit/s ({:.0} %)",
        secs(backed_off),
        peak_queue.as_millis(),
        drained.as_secs_f64(),
        mean / 1000.0,
        mean / 500_000.0 * 100.0
    );
    if backed_off.is_none_or(|t| t > Duration::from_secs(1)) {
        return Err(format!("did not back off within 1 s: {report}"));
    }
    if drained > Duration::from_secs(3) {
        return Err(format!("queue not drained within 3 s: {report}"));
    }
    Ok(report)
}

/// 1 Mbit/s with 5 % random loss: estimate never below 60 % after convergence (5 s).
fn check_random_loss(est: &mut dyn Estimator) -> Result<String, String> {
    check_random_loss_at(est, 0.05)
}

fn check_random_loss_at(est: &mut dyn Estimator, loss: f64) -> Result<String, String> {
    let cap = 1_000_000u64;
    let mut lossy = phase(0.0, cap);
    lossy.loss = loss;
    let run = simulate(est, &[lossy], Duration::from_secs(30), SEED + 3);
    let min = run
        .between(Duration::from_secs(5), Duration::from_secs(30))
        .map(|s| s.estimate_bps)
        .min()
        .unwrap_or(0);
    let mean = run.mean_estimate(Duration::from_secs(5), Duration::from_secs(30));
    let converged = run.first(Duration::ZERO, |s| s.estimate_bps >= cap * 7 / 10);
    let report = format!(
        "1 Mbit/s, {:.0} % loss: >= 70 % at {}; min estimate 5-30 s {:.0} kbit/s ({:.0} %); mean {:.0} kbit/s ({:.0} %)",
        loss * 100.0,
        secs(converged),
        min as f64 / 1000.0,
        min as f64 / cap as f64 * 100.0,
        mean / 1000.0,
        mean / cap as f64 * 100.0
    );
    if min < cap * 6 / 10 {
        return Err(format!("collapsed under random loss: {report}"));
    }
    Ok(report)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn pass(r: Result<String, String>) {
    match r {
        Ok(report) => println!("{report}"),
        Err(e) => panic!("{e}"),
    }
}

/// Beyond the brief's scenarios: delay jitter (netsim keeps order, so this is noise on
/// the one-way delay) must not read as congestion. 1 Mbit/s with 0-20 ms of jitter.
#[test]
fn delay_jitter_does_not_read_as_congestion() {
    for jitter_ms in [0u64, 5, 10, 20] {
        let mut p = phase(0.0, 1_000_000);
        p.jitter = Duration::from_millis(jitter_ms);
        let run = simulate(&mut bwe(), &[p], Duration::from_secs(30), SEED + 4);
        let (from, to) = (Duration::from_secs(5), Duration::from_secs(30));
        let mean = run.mean_estimate(from, to);
        let min = run
            .between(from, to)
            .map(|s| s.estimate_bps)
            .min()
            .unwrap_or(0);
        println!(
            "1 Mbit/s, jitter {jitter_ms} ms: mean estimate 5-30 s {:.0} kbit/s, min {} kbit/s, link loss {:.2} %",
            mean / 1000.0,
            min / 1000,
            run.link_loss(from, to) * 100.0
        );
        assert!(mean >= 800_000.0 && min >= 600_000, "jitter {jitter_ms} ms");
    }
}

#[test]
fn converges_on_a_1_mbps_bottleneck_without_loss() {
    pass(check_converges(&mut bwe()));
}

#[test]
fn follows_a_capacity_rise_to_3_mbps_within_10_s() {
    pass(check_rise(&mut bwe()));
}

#[test]
fn backs_off_within_1_s_and_drains_the_queue_within_3_s_on_a_drop() {
    pass(check_drop(&mut bwe()));
}

#[test]
fn holds_at_least_60_percent_under_5_percent_random_loss() {
    pass(check_random_loss(&mut bwe()));
}

/// The lossy links Sluice exists for: 15 % random loss on a link that is not full is not
/// congestion (no standing queue), and the estimate must not collapse under it.
#[test]
fn holds_at_least_60_percent_under_15_percent_random_loss() {
    pass(check_random_loss_at(&mut bwe(), 0.15));
}

#[test]
fn the_same_checks_fail_a_constant_estimate() {
    for constant in [300_000, 1_000_000, 3_000_000] {
        let failed = [
            check_converges(&mut Constant(constant)).is_err(),
            check_rise(&mut Constant(constant)).is_err(),
            check_drop(&mut Constant(constant)).is_err(),
            check_random_loss(&mut Constant(constant)).is_err(),
        ];
        println!("constant {constant} bit/s fails [converge, rise, drop, loss]: {failed:?}");
        assert!(
            failed.iter().any(|f| *f),
            "constant {constant} passed every check"
        );
    }
}

/// The acceptance checks again with the capacity change at 8 different moments of
/// the sawtooth (spread over more than one of its periods) and 8 loss seeds: the results above are not a lucky alignment.
#[test]
fn acceptance_holds_across_event_timings_and_seeds() {
    let (mut worst_rise, mut worst_backoff, mut worst_drain) = (0.0f64, 0.0f64, 0.0f64);
    let mut worst_loss_min = u64::MAX;
    for k in 0..8u64 {
        let at = 20.0 + k as f64 * 0.55;
        let change = Duration::from_secs_f64(at);
        let run = simulate(
            &mut bwe(),
            &[phase(0.0, 1_000_000), phase(at, 3_000_000)],
            Duration::from_secs_f64(at + 12.0),
            k,
        );
        let rise = run
            .first(change, |s| s.estimate_bps >= 2_100_000)
            .map(|t| (t - change).as_secs_f64());
        worst_rise = worst_rise.max(rise.unwrap_or(f64::INFINITY));

        let mut low = phase(at, 500_000);
        low.queue_bytes = None;
        let run = simulate(
            &mut bwe(),
            &[phase(0.0, 1_000_000), phase(10.0, 3_000_000), low],
            Duration::from_secs_f64(at + 10.0),
            k,
        );
        let backoff = run
            .first(change, |s| s.estimate_bps <= 500_000)
            .map(|t| (t - change).as_secs_f64());
        worst_backoff = worst_backoff.max(backoff.unwrap_or(f64::INFINITY));
        let drain = run
            .between(change, change + Duration::from_secs(10))
            .filter(|s| s.queue_delay >= Duration::from_millis(100))
            .map(|s| (s.t - change + SAMPLE_INTERVAL).as_secs_f64())
            .fold(0.0, f64::max);
        worst_drain = worst_drain.max(drain);

        let mut lossy = phase(0.0, 1_000_000);
        lossy.loss = 0.05;
        let run = simulate(&mut bwe(), &[lossy], Duration::from_secs(30), k);
        let min = run
            .between(Duration::from_secs(5), Duration::from_secs(30))
            .map(|s| s.estimate_bps)
            .min()
            .unwrap_or(0);
        worst_loss_min = worst_loss_min.min(min);
    }
    println!(
        "8 timings/seeds, worst: rise to 70 % {worst_rise:.2} s; back-off {worst_backoff:.2} s; queue < 100 ms for good {worst_drain:.2} s; min estimate under 5 % loss {} kbit/s",
        worst_loss_min / 1000
    );
    assert!(worst_rise <= 10.0);
    assert!(worst_backoff <= 1.0);
    assert!(worst_drain <= 3.0);
    assert!(worst_loss_min >= 600_000);
}

/// Beyond the brief's scenarios: reordering (a share of packets held back 10 ms, so
/// later ones overtake them) must not read as loss or congestion. 1 Mbit/s.
#[test]
fn reordering_does_not_read_as_congestion() {
    for share in [0.01, 0.05, 0.2] {
        let mut p = phase(0.0, 1_000_000);
        p.reorder = share;
        let run = simulate(&mut bwe(), &[p], Duration::from_secs(30), SEED + 5);
        let (from, to) = (Duration::from_secs(5), Duration::from_secs(30));
        let mean = run.mean_estimate(from, to);
        let min = run
            .between(from, to)
            .map(|s| s.estimate_bps)
            .min()
            .unwrap_or(0);
        println!(
            "1 Mbit/s, {:.0} % reordered by 10 ms: mean estimate 5-30 s {:.0} kbit/s, min {} kbit/s, link loss {:.2} %",
            share * 100.0,
            mean / 1000.0,
            min / 1000,
            run.link_loss(from, to) * 100.0
        );
        assert!(mean >= 800_000.0 && min >= 600_000, "reorder {share}");
    }
}

/// A known weakness, measured and not asserted (so ignored by default): a bulk
/// TCP-like flow joins the 2 Mbit/s bottleneck at 10 s and keeps its 37.5 kB buffer
/// full. Delay-based control reads TCP's queue as its own overuse and yields almost
/// everything; docs/congestion.md has the numbers and what moving the threshold
/// adaptation towards the draft's constants does.
/// `cargo test -p sluice-bwe --test netsim tcp_like -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_share_against_a_tcp_like_flow() {
    let mut with_tcp = phase(10.0, 2_000_000);
    with_tcp.tcp = true;
    with_tcp.queue_bytes = None;
    let run = simulate(
        &mut bwe(),
        &[phase(0.0, 2_000_000), with_tcp],
        Duration::from_secs(60),
        SEED + 6,
    );
    let (from, to) = (Duration::from_secs(30), Duration::from_secs(60));
    let ours = run.mean_estimate(from, to);
    let tcp_bps = run.tcp_delivered_bytes as f64 * 8.0 / 50.0;
    let p50_queue = percentile(run.between(from, to).map(|s| s.queue_delay).collect(), 0.5);
    println!(
        "2 Mbit/s shared with a TCP-like flow from 10 s: our mean estimate 30-60 s {:.0} kbit/s ({:.0} %), TCP goodput 10-60 s {:.0} kbit/s, median queueing {} ms",
        ours / 1000.0,
        ours / 2_000_000.0 * 100.0,
        tcp_bps / 1000.0,
        p50_queue.as_millis()
    );
}

/// Prints a 1 -> 3 -> 0.5 Mbit/s run, for tuning:
/// `cargo test -p sluice-bwe --test netsim trace -- --ignored --nocapture`.
#[test]
#[ignore]
fn trace() {
    let mut low = phase(40.0, 500_000);
    low.queue_bytes = None;
    let mut b = bwe();
    let phases = [phase(0.0, 1_000_000), phase(20.0, 3_000_000), low];
    let run = simulate(&mut b, &phases, Duration::from_secs(50), SEED);
    for s in &run.samples {
        println!(
            "{:6.2} s  estimate {:5} kbit/s  capacity {:5} kbit/s  queueing {:4} ms  link sent {} dropped {}",
            s.t.as_secs_f64(),
            s.estimate_bps / 1000,
            s.capacity_bps / 1000,
            s.queue_delay.as_millis(),
            s.link_sent,
            s.link_dropped
        );
    }
    println!("{:?}", b.stats());
}
