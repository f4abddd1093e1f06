//! Audio redundancy (RFC 2198 RED): each packet also carries the previous one or two
//! audio frames, so a receiver that lost a packet finds its frame in the next one.
//!
//! Opus frames are small (20 ms at 32 kbit/s is 80 bytes), so repeating one or two costs
//! little next to the packet overhead, and repairs a loss without waiting a round trip for
//! a retransmission, which audio cannot afford. The SFU builds RED per subscriber from
//! the publisher's plain Opus: only subscribers whose link loses packets pay for it.

/// Largest timestamp offset a redundant block header can carry (14 bits).
pub const MAX_TIMESTAMP_OFFSET: u32 = (1 << 14) - 1;
/// Largest redundant block a block header can describe (10 bits).
pub const MAX_BLOCK_LEN: usize = (1 << 10) - 1;

/// One earlier frame to repeat: its RTP timestamp and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedundantBlock<'a> {
    /// RTP timestamp of the frame.
    pub timestamp: u32,
    /// The frame as it was sent.
    pub payload: &'a [u8],
}

/// Appends the RED payload for a packet with `primary_timestamp` and `primary` payload
/// of `block_pt` to `out`: the block headers, the `redundant` frames (oldest first) and
/// the primary frame. Frames that cannot be described (older than 14 bits of timestamp,
/// not older than the primary, longer than 1023 bytes) are left out, so the result is
/// always a valid RED payload.
pub fn write_red_payload<'a>(
    out: &mut Vec<u8>,
    block_pt: u8,
    primary_timestamp: u32,
    primary: &[u8],
    redundant: impl Iterator<Item = RedundantBlock<'a>> + Clone,
) {
    let usable = |b: &RedundantBlock<'_>| {
        let offset = primary_timestamp.wrapping_sub(b.timestamp);
        offset != 0 && offset <= MAX_TIMESTAMP_OFFSET && b.payload.len() <= MAX_BLOCK_LEN
    };
    for block in redundant.clone().filter(usable) {
        let offset = primary_timestamp.wrapping_sub(block.timestamp);
        let len = block.payload.len() as u32;
        let header = 0x8000_0000 | (u32::from(block_pt & 0x7F) << 24) | (offset << 10) | len;
        out.extend_from_slice(&header.to_be_bytes());
    }
    out.push(block_pt & 0x7F);
    for block in redundant.filter(usable) {
        out.extend_from_slice(block.payload);
    }
    out.extend_from_slice(primary);
}

/// One block of a RED payload as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// Payload type of the block's frame (Opus).
    pub payload_type: u8,
    /// How far the block's frame lies before the packet's timestamp (0 for the primary).
    pub timestamp_offset: u32,
    /// The frame.
    pub payload: &'a [u8],
}

/// Splits a RED payload into its blocks, redundant ones first and the primary last;
/// `None` when it is malformed (a receiver then drops the packet).
pub fn parse_red_payload(payload: &[u8]) -> Option<Vec<RedBlock<'_>>> {
    let mut headers = Vec::new();
    let mut at = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            headers.push((first & 0x7F, 0u32, None));
            at += 1;
            break;
        }
        let bytes: [u8; 4] = payload.get(at..at + 4)?.try_into().ok()?;
        let word = u32::from_be_bytes(bytes);
        let pt = ((word >> 24) & 0x7F) as u8;
        let offset = (word >> 10) & MAX_TIMESTAMP_OFFSET;
        let len = (word & 0x3FF) as usize;
        headers.push((pt, offset, Some(len)));
        at += 4;
    }
    let mut blocks = Vec::with_capacity(headers.len());
    for (payload_type, timestamp_offset, len) in headers {
        let end = match len {
            Some(len) => at.checked_add(len)?,
            None => payload.len(),
        };
        blocks.push(RedBlock {
            payload_type,
            timestamp_offset,
            payload: payload.get(at..end)?,
        });
        at = end;
    }
    Some(blocks)
}

/// Turns a media packet into RED with its payload as the only (primary) block, as WebRTC
/// receivers expect video when FEC may accompany it: the block header (the packet's payload
/// type) goes in after the RTP header, the packet's payload type becomes `red_pt`. False,
/// and the packet untouched, when it is not RTP.
pub fn wrap_in_red(packet: &mut Vec<u8>, red_pt: u8) -> bool {
    let Ok(header) = crate::RtpHeader::parse(packet) else {
        return false;
    };
    let (at, block_pt) = (header.header_len(), header.payload_type());
    if at > packet.len() {
        return false;
    }
    packet.insert(at, block_pt & 0x7F);
    crate::set_payload_type(packet, red_pt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_oldest_first_with_the_primary_last() {
        let mut out = Vec::new();
        let redundant = [
            RedundantBlock {
                timestamp: 1000,
                payload: &[1, 1, 1],
            },
            RedundantBlock {
                timestamp: 1960,
                payload: &[2, 2],
            },
        ];
        write_red_payload(&mut out, 111, 2920, &[3, 3, 3, 3], redundant.into_iter());
        assert_eq!(out.len(), 4 + 4 + 1 + 3 + 2 + 4);
        let blocks = parse_red_payload(&out).unwrap();
        assert_eq!(
            blocks,
            vec![
                RedBlock {
                    payload_type: 111,
                    timestamp_offset: 1920,
                    payload: &[1, 1, 1]
                },
                RedBlock {
                    payload_type: 111,
                    timestamp_offset: 960,
                    payload: &[2, 2]
                },
                RedBlock {
                    payload_type: 111,
                    timestamp_offset: 0,
                    payload: &[3, 3, 3, 3]
                },
            ]
        );
    }

    #[test]
    fn frames_a_header_cannot_describe_are_left_out() {
        let big = vec![7u8; MAX_BLOCK_LEN + 1];
        let redundant = [
            RedundantBlock {
                timestamp: 0,
                payload: &[1],
            }, // 20000 ticks before: beyond 14 bits
            RedundantBlock {
                timestamp: 19_000,
                payload: &big,
            },
            RedundantBlock {
                timestamp: 20_000,
                payload: &[2],
            }, // same timestamp as the primary
            RedundantBlock {
                timestamp: 19_040,
                payload: &[4],
            },
        ];
        let mut out = Vec::new();
        write_red_payload(&mut out, 111, 20_000, &[9], redundant.into_iter());
        let blocks = parse_red_payload(&out).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].payload, &[4]);
        assert_eq!(blocks[0].timestamp_offset, 960);
        assert_eq!(blocks[1].payload, &[9]);
    }

    #[test]
    fn malformed_payloads_are_none_not_a_panic() {
        assert_eq!(parse_red_payload(&[]), None);
        assert_eq!(parse_red_payload(&[0x80 | 111, 0, 0]), None);
        // a block longer than what follows
        assert_eq!(parse_red_payload(&[0x80 | 111, 0, 4, 10, 111, 1]), None);
        assert!(parse_red_payload(&[111]).is_some());
    }

    #[test]
    fn a_wrapped_packet_reads_back_as_its_own_payload_in_one_block() {
        let mut packet = vec![0x80, 0x80 | 96, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0xAA, 0xBB];
        assert!(super::wrap_in_red(&mut packet, 116));
        let header = crate::RtpHeader::parse(&packet).unwrap();
        assert_eq!(header.payload_type(), 116);
        assert!(header.marker(), "the marker stays");
        let blocks = parse_red_payload(header.payload()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].payload_type, 96);
        assert_eq!(blocks[0].payload, &[0xAA, 0xBB]);
        let mut junk = vec![1, 2, 3];
        assert!(!super::wrap_in_red(&mut junk, 116));
        assert_eq!(junk, vec![1, 2, 3]);
    }
}
