//! What both 1.3 roles share about flights: the records we sent and the bytes each
//! carried, ACKs in both directions, selective re-sends on the timer, on a partial ACK and
//! on the peer's repeat, and cutting a flight into records and datagrams.

use std::time::Instant;

use super::*;

/// One handshake message of a flight we send, with the bytes the peer acknowledged.
#[derive(Debug)]
pub(super) struct OutMessage {
    pub(super) msg_type: u8,
    pub(super) message_seq: u16,
    pub(super) epoch: u16,
    pub(super) body: Vec<u8>,
    /// Sorted, disjoint half-open ranges the peer acknowledged.
    pub(super) acked: Vec<(u32, u32)>,
    /// An empty message is acknowledged as a whole.
    pub(super) empty_acked: bool,
    /// Where its first transmission cut it. Re-sends cut at the same offsets (and never
    /// merge two original fragments into one), because some stacks reassemble only
    /// fragments that match the ones they have seen (dimpl, docs/dtls.md).
    pub(super) cuts: Option<Vec<u32>>,
}

impl OutMessage {
    pub(super) fn new(msg_type: u8, message_seq: u16, epoch: u16, body: Vec<u8>) -> Self {
        Self {
            msg_type,
            message_seq,
            epoch,
            body,
            acked: Vec::new(),
            empty_acked: false,
            cuts: None,
        }
    }

    pub(super) fn is_acked(&self) -> bool {
        if self.body.is_empty() {
            return self.empty_acked;
        }
        self.acked.first() == Some(&(0, self.body.len() as u32))
    }

    pub(super) fn ack(&mut self, start: u32, end: u32) {
        if self.body.is_empty() {
            self.empty_acked = true;
            return;
        }
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut merged = Vec::with_capacity(self.acked.len() + 1);
        for &(a, b) in &self.acked {
            if b < s || a > e {
                merged.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        merged.push((s, e));
        merged.sort_unstable();
        self.acked = merged;
    }

    /// The byte ranges still to deliver.
    pub(super) fn missing(&self) -> Vec<(usize, usize)> {
        let len = self.body.len();
        if len == 0 {
            return if self.empty_acked {
                vec![]
            } else {
                vec![(0, 0)]
            };
        }
        let mut out = Vec::new();
        let mut at = 0usize;
        for &(a, b) in &self.acked {
            if (a as usize) > at {
                out.push((at, a as usize));
            }
            at = at.max(b as usize);
        }
        if at < len {
            out.push((at, len));
        }
        out
    }
}

/// A flight we sent and may have to send again, in part.
#[derive(Debug, Default)]
pub(super) struct Flight {
    pub(super) messages: Vec<OutMessage>,
    /// (epoch, record sequence) -> (message index, byte range, when sent), for ACKs.
    pub(super) sent: BTreeMap<(u16, u64), (usize, u32, u32, Instant)>,
    pub(super) sent_order: VecDeque<(u16, u64)>,
    /// Retransmitted on our timer (everything but a HelloRetryRequest).
    pub(super) timed: bool,
}

impl Flight {
    pub(super) fn new(messages: Vec<OutMessage>, timed: bool) -> Self {
        Self {
            messages,
            timed,
            ..Self::default()
        }
    }

    pub(super) fn is_acked(&self) -> bool {
        self.messages.iter().all(OutMessage::is_acked)
    }

    pub(super) fn remember(
        &mut self,
        epoch: u16,
        seq: u64,
        msg: usize,
        range: (u32, u32),
        at: Instant,
    ) {
        if self.sent_order.len() == MAX_SENT_RECORDS {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent.insert((epoch, seq), (msg, range.0, range.1, at));
        self.sent_order.push_back((epoch, seq));
    }
}

impl Conn13 {
    /// A message of the peer's next flight arrived, so the peer has all of ours (it cannot
    /// answer a flight it has not completed): stop re-sending it.
    pub(super) fn implicit_ack(&mut self) {
        if self.state == State::Connected {
            return;
        }
        if let Some(flight) = self.flight.as_mut() {
            for m in &mut flight.messages {
                let len = m.body.len() as u32;
                m.ack(0, len);
            }
            self.retransmit_at = None;
        }
    }

    pub(super) fn note_for_ack(&mut self, now: Instant, epoch: u16, seq: u64) {
        let number = (u64::from(epoch), seq);
        if self.to_ack.len() < MAX_ACK_RECORDS && !self.to_ack.contains(&number) {
            self.to_ack.push(number);
        }
        if self.ack_at.is_none() {
            self.ack_at = Some(now + ACK_DELAY);
        }
    }

    /// Sends an ACK of every record of the peer's current flight we hold, in as many
    /// records (and datagrams) as it takes.
    pub(super) fn send_ack(&mut self, now: Instant) -> Result<(), Error> {
        if self.to_ack.is_empty() {
            return Ok(());
        }
        let epoch: u16 = if self.app_write.is_some() { 3 } else { 2 };
        let Some(_) = self.write_keys(epoch) else {
            // Nothing to protect an ACK with yet (the ServerHello was lost): the peer's
            // timer covers it.
            return Ok(());
        };
        let overhead = self.overhead(epoch) + 2;
        let per_record = (self.config.max_datagram_size.saturating_sub(overhead) / 16).max(1);
        // Newest first: if only the first ACK datagram arrives, it tells the sender about
        // its latest transmission, which older ACKs did not cover.
        let numbers: Vec<(u64, u64)> = self.to_ack.iter().rev().copied().collect();
        let mut datagram = Vec::with_capacity(self.config.max_datagram_size);
        for chunk in numbers.chunks(per_record) {
            let body = m13::encode_ack(chunk);
            if !datagram.is_empty()
                && datagram.len() + overhead + body.len() > self.config.max_datagram_size
            {
                self.transmits.push_back(std::mem::take(&mut datagram));
            }
            self.write_record(&mut datagram, epoch, rec13::CONTENT_ACK, &body)?;
        }
        if !datagram.is_empty() {
            self.transmits.push_back(datagram);
        }
        self.last_ack_sent = Some(now);
        Ok(())
    }

    pub(super) fn handle_ack(&mut self, now: Instant, body: &[u8]) -> Result<(), Error> {
        let Some(numbers) = m13::parse_ack(body) else {
            self.stats.malformed_records += 1;
            return Ok(());
        };
        let Some(flight) = self.flight.as_mut() else {
            return Ok(());
        };
        let mut newly = false;
        // Every record has its own number, re-sends included, so an ACK is an RTT sample
        // without Karn's ambiguity: the newest record it newly acknowledges.
        let mut newest_sent: Option<Instant> = None;
        for (epoch, seq) in numbers {
            let Ok(epoch) = u16::try_from(epoch) else {
                continue;
            };
            if let Some(&(msg, start, end, at)) = flight.sent.get(&(epoch, seq)) {
                if let Some(m) = flight.messages.get_mut(msg) {
                    let before = m.acked.clone();
                    let was = m.is_acked();
                    m.ack(start, end);
                    if m.acked != before || (!was && m.is_acked()) {
                        newly = true;
                        newest_sent = newest_sent.max(Some(at));
                    }
                }
            }
        }
        if !newly {
            return Ok(());
        }
        let acked_all = flight.is_acked();
        if let Some(at) = newest_sent {
            self.timer
                .on_rtt_sample(now.saturating_duration_since(at).saturating_sub(ACK_DELAY));
            self.rtt_probe = None;
        }
        if acked_all {
            self.on_flight_acked(now);
            return Ok(());
        }
        // Part of the flight arrived: the path is alive. Re-send what is missing now
        // rather than at the timer (once the rest of this burst of ACKs is read), at most
        // once per half round trip.
        self.peer_progress = true;
        let spacing = self.timer.repeat_spacing();
        if self.resend_at.is_none()
            && self
                .last_transmission
                .is_some_and(|t| now.saturating_duration_since(t) >= spacing)
        {
            self.resend_at = Some(now + ACK_RESEND_DELAY);
        }
        Ok(())
    }

    /// Our whole flight is acknowledged: stop its timer. A client's final flight is then
    /// done with; a server's flight stays until the client's answers it.
    pub(super) fn on_flight_acked(&mut self, _now: Instant) {
        self.retransmit_at = None;
        self.resend_at = None;
        if self.state == State::Connected && self.role == Role::Client {
            self.flight = None;
            self.retain_until = None;
            self.hs_write = None;
            self.hs_read = None;
        }
    }

    /// The peer repeated a message of its previous flight: ours was lost.
    pub(super) fn on_peer_repeat(&mut self, now: Instant, message_seq: u16) -> Result<(), Error> {
        let Some((first, last)) = self.peer_last_flight else {
            return Ok(());
        };
        if !(first..=last).contains(&message_seq) {
            return Ok(());
        }
        let spacing = self.timer.repeat_spacing();
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < spacing);
        if self.state == State::Connected && self.role == Role::Server {
            // The client repeats its final flight: our ACK was lost.
            if !self.config.recovery.retain_final_flight || recent(self.last_ack_sent) {
                return Ok(());
            }
            self.stats.final_flight_retransmissions += 1;
            self.ack_at = None;
            return self.send_ack(now);
        }
        if self.flight.is_none() || !self.config.recovery.resend_on_repeat {
            return Ok(());
        }
        if recent(self.last_transmission) {
            return Ok(());
        }
        self.stats.repeat_retransmissions += 1;
        self.rtt_probe = None;
        self.transmit_flight(now, true)
    }

    pub(super) fn write_keys(&self, epoch: u16) -> Option<&EpochKeys> {
        match epoch {
            2 => self.hs_write.as_ref(),
            3 => self.app_write.as_ref(),
            _ => None,
        }
    }

    pub(super) fn overhead(&self, epoch: u16) -> usize {
        if epoch == 0 {
            crate::record::RECORD_HEADER_LEN
        } else {
            self.write_keys(epoch)
                .map_or(22, |k| k.suite().record_overhead())
        }
    }

    /// Writes one record, taking the next record number of its epoch.
    pub(super) fn write_record(
        &mut self,
        out: &mut Vec<u8>,
        epoch: u16,
        content_type: u8,
        content: &[u8],
    ) -> Result<u64, Error> {
        let slot = self
            .next_record
            .get_mut(usize::from(epoch))
            .ok_or(Error::Crypto("epoch out of range"))?;
        let seq = *slot;
        if seq > crate::record::MAX_SEQUENCE {
            return Err(Error::Crypto("record sequence exhausted"));
        }
        *slot += 1;
        if epoch == 0 {
            rec13::write_plaintext(out, content_type, crate::record::DTLS_1_2, seq, content);
            return Ok(seq);
        }
        let keys = self
            .write_keys(epoch)
            .ok_or(Error::Crypto("no keys for epoch"))?;
        rec13::write_ciphertext(out, keys, epoch, seq, content_type, content)?;
        Ok(seq)
    }

    pub(super) fn send_flight(&mut self, now: Instant, flight: Flight) -> Result<(), Error> {
        self.flight = Some(flight);
        self.timer.reset_backoff();
        self.transmit_flight(now, false)?;
        self.rtt_probe = self.retransmit_at.map(|_| now);
        Ok(())
    }

    /// Sends every byte of the current flight not yet acknowledged, in fresh records.
    pub(super) fn transmit_flight(
        &mut self,
        now: Instant,
        retransmission: bool,
    ) -> Result<(), Error> {
        let Some(mut flight) = self.flight.take() else {
            self.retransmit_at = None;
            return Ok(());
        };
        let result = self.packetize(&mut flight, now);
        let datagrams = match result {
            Ok(n) => n,
            Err(e) => {
                self.flight = Some(flight);
                return Err(e);
            }
        };
        if retransmission
            && self.config.recovery.redundant_retransmission
            && datagrams <= REDUNDANT_FLIGHT_DATAGRAMS
            && datagrams > 0
        {
            let again = self.packetize(&mut flight, now);
            if let Err(e) = again {
                self.flight = Some(flight);
                return Err(e);
            }
        }
        let timed = flight.timed && !flight.is_acked();
        self.flight = Some(flight);
        self.last_transmission = Some(now);
        self.retransmit_at = timed.then(|| now + self.timer.current());
        Ok(())
    }

    pub(super) fn packetize(&mut self, flight: &mut Flight, now: Instant) -> Result<usize, Error> {
        let max = self.config.max_datagram_size;
        let mut written = 0;
        let mut datagram: Vec<u8> = Vec::with_capacity(max);
        for index in 0..flight.messages.len() {
            let (msg_type, message_seq, epoch, total, missing, cuts) = {
                let m = &flight.messages[index];
                (
                    m.msg_type,
                    m.message_seq,
                    m.epoch,
                    m.body.len(),
                    m.missing(),
                    m.cuts.clone(),
                )
            };
            let first_transmission = cuts.is_none();
            let cuts = cuts.unwrap_or_default();
            let mut new_cuts = Vec::new();
            let overhead = self.overhead(epoch) + HANDSHAKE_HEADER_LEN;
            if overhead + 1 > max {
                return Err(Error::Crypto("datagram size below record overhead"));
            }
            for (start, end) in missing {
                let mut offset = start;
                loop {
                    // A re-send goes up to the next original cut, whole if it can.
                    let piece_end = cuts
                        .iter()
                        .map(|&c| c as usize)
                        .find(|&c| c > offset && c < end)
                        .unwrap_or(end);
                    let remaining = piece_end - offset;
                    let space = max.saturating_sub(datagram.len() + overhead);
                    let too_small = if first_transmission {
                        space < remaining && space < MIN_FRAGMENT
                    } else {
                        space < remaining
                    };
                    if !datagram.is_empty() && (space == 0 || too_small) {
                        self.transmits
                            .push_back(std::mem::replace(&mut datagram, Vec::with_capacity(max)));
                        written += 1;
                        continue;
                    }
                    let len = remaining.min(space);
                    let mut fragment = Vec::with_capacity(HANDSHAKE_HEADER_LEN + len);
                    FragmentHeader {
                        msg_type,
                        length: total as u32,
                        message_seq,
                        fragment_offset: offset as u32,
                        fragment_length: len as u32,
                    }
                    .write(&mut fragment);
                    let body = flight
                        .messages
                        .get(index)
                        .and_then(|m| m.body.get(offset..offset + len))
                        .ok_or(Error::Crypto("fragment range"))?;
                    fragment.extend_from_slice(body);
                    let seq = self.write_record(
                        &mut datagram,
                        epoch,
                        rec13::CONTENT_HANDSHAKE,
                        &fragment,
                    )?;
                    flight.remember(
                        epoch,
                        seq,
                        index,
                        (offset as u32, (offset + len) as u32),
                        now,
                    );
                    if first_transmission && offset > 0 {
                        new_cuts.push(offset as u32);
                    }
                    offset += len;
                    if offset >= end {
                        break;
                    }
                }
            }
            if let Some(m) = flight.messages.get_mut(index) {
                if m.cuts.is_none() {
                    m.cuts = Some(new_cuts);
                }
            }
        }
        if !datagram.is_empty() {
            self.transmits.push_back(datagram);
            written += 1;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::connection::test_support::deliver;

    /// An ACK written with the peer's real keys but naming records we never sent, and a
    /// flood of them, changes nothing and grows nothing.
    #[test]
    fn forged_and_flooded_acks_are_ignored() {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        drop_all(&mut s);
        // Let the client read the server's flight without answering, so that it holds
        // epoch-2 keys; use them to write ACKs the server will authenticate.
        let inner_s = s.v13.as_mut().expect("1.3 server");
        inner_s.transmit_flight(now, false).expect("re-send");
        let mut first = Vec::new();
        while let Some(d) = s.poll_transmit() {
            first.push(d);
        }
        for d in &first {
            c.handle_datagram(now, d);
        }
        // The client's flight is lost; the forged ACKs below take record numbers after
        // it, and its re-send takes fresh ones again.
        drop_all(&mut c);
        let client = c.v13.as_mut().expect("1.3 client");
        let bogus: Vec<(u64, u64)> = (0..4000u64).map(|i| (2, 1_000_000 + i)).collect();
        let body = m13::encode_ack(&bogus);
        for _ in 0..1000 {
            let mut d = Vec::new();
            client
                .write_record(&mut d, 2, rec13::CONTENT_ACK, &body)
                .expect("ACK record");
            s.handle_datagram(now, &d);
        }
        let inner_s = s.v13.as_ref().expect("1.3 server");
        let flight = inner_s.flight.as_ref().expect("flight kept");
        assert!(!flight.is_acked(), "nothing we sent was acknowledged");
        assert!(flight.sent.len() <= MAX_SENT_RECORDS);
        assert!(inner_s.retransmit_at.is_some(), "our timer still runs");
        assert!(!s.is_finished());
        // The real flight still completes the handshake.
        let later = now + Duration::from_secs(1);
        c.handle_timeout(later);
        for _ in 0..3 {
            deliver(&mut c, &mut s, now);
            deliver(&mut s, &mut c, now);
        }
        assert!(
            c.is_connected() && s.is_connected(),
            "{:?} {:?} {:?}",
            failure(&mut c),
            failure(&mut s),
            s.stats()
        );
    }

    #[test]
    fn an_ack_of_part_of_a_flight_re_sends_only_the_rest() {
        let (mut c, mut s, client, server, now) = pair13();
        let _ = (client, server);
        deliver(&mut c, &mut s, now);
        let inner = s.v13.as_mut().expect("1.3 server");
        let flight = inner.flight.as_mut().expect("flight");
        // Acknowledge every record but the last one sent.
        let numbers: Vec<(u16, u64)> = flight.sent.keys().copied().collect();
        let (last, rest) = numbers.split_last().expect("records");
        for &(e, q) in rest {
            if let Some(&(m, a, b, _)) = flight.sent.get(&(e, q)) {
                flight.messages[m].ack(a, b);
            }
        }
        let &(m, a, b, _) = flight.sent.get(last).expect("last record");
        assert!(!flight.is_acked());
        let missing: Vec<_> = flight.messages.iter().map(|m| m.missing()).collect();
        let expect: Vec<Vec<(usize, usize)>> = (0..missing.len())
            .map(|i| {
                if i == m {
                    vec![(a as usize, b as usize)]
                } else {
                    vec![]
                }
            })
            .collect();
        assert_eq!(missing, expect);
        drop_all(&mut s);
        let later = now + Duration::from_secs(1);
        s.handle_timeout(later);
        let mut resent = 0;
        while s.poll_transmit().is_some() {
            resent += 1;
        }
        // One record re-sent (twice: a one-datagram re-send is sent redundantly).
        assert_eq!(resent, 2);
    }

    /// The server's ACK of the client's final flight is lost: the client's timer repeats
    /// its flight (with fresh record numbers), the server, connected long since, still
    /// reads epoch 2 and ACKs again, and the client stops.
    #[test]
    fn a_lost_final_ack_is_answered_by_a_repeat_and_a_second_ack() {
        let (mut c, mut s, _, _, now) = pair13();
        deliver(&mut c, &mut s, now);
        deliver(&mut s, &mut c, now);
        deliver(&mut c, &mut s, now);
        assert!(s.is_connected() && c.is_connected());
        drop_all(&mut s);
        let due = c
            .poll_timeout()
            .expect("the client's final flight is timed");
        c.handle_timeout(due);
        assert_eq!(c.stats().timer_retransmissions, 1);
        deliver(&mut c, &mut s, due);
        assert_eq!(s.stats().final_flight_retransmissions, 1, "re-ACKed");
        deliver(&mut s, &mut c, due);
        let inner = c.v13.as_ref().expect("1.3 client");
        assert!(inner.flight.is_none(), "acknowledged at last");
        assert!(inner.retransmit_at.is_none());
    }
}
