//! Chunking of frames on stream transports, sans-IO: every stream runtime
//! (WebSocket, QUIC, yours) uses this, so they interleave the same way and
//! read each other's chunks.
//!
//! Every frame travels as one or more transport messages ("chunks") of at
//! most [`MAX_CHUNK`] bytes, so that a writer can interleave a small
//! control frame between the chunks of a 4 MiB call payload. An
//! [`Outbox`] queues a connection's frames by [`TrafficClass`] and hands
//! out the next chunk, highest class first; a [`Reassembler`] turns
//! received chunks back into frames. A chunk starts with a small header:
//!
//! ```text
//! byte 0: bits 0-1 lane (0 control, 1 broadcast, 2 call)
//!         bit 2    FIRST: a 4-byte big-endian total frame length follows
//!         bit 3    LAST:  this chunk completes the frame
//!         bits 4-7 zero (reserved)
//! [bytes 1..5: total length, FIRST chunks only]
//! payload
//! ```
//!
//! Frames of one lane are sent one after the other; chunks of different
//! lanes may interleave. The reader keeps one reassembly buffer per lane and
//! refuses a frame whose announced length exceeds `limits.max_frame_size`
//! from its first chunk, before buffering any of it: its chunks are skipped.
//!
//! **Whole messages.** A connection whose first message has reserved bits
//! set is not chunked at all: upstream MPREG's clients send JSON (its first
//! byte is `{`), one message per request (see [`crate::upstream`]). The
//! [`Reassembler`] then takes every message as one frame, and the answers
//! go out as whole messages ([`Outbox::push_whole`]). Telling the two apart
//! costs native traffic one look at the first byte of a connection.

use crate::event::TrafficClass;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use thiserror::Error;

/// Largest transport message (header included): 64 KiB.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Header of a FIRST chunk.
const FIRST_HEADER: usize = 5;

const FIRST: u8 = 0b0100;
const LAST: u8 = 0b1000;
const LANE_MASK: u8 = 0b0011;

/// The lane of a traffic class.
fn lane(class: TrafficClass) -> usize {
    match class {
        TrafficClass::Control => 0,
        TrafficClass::Broadcast => 1,
        TrafficClass::Call => 2,
    }
}

/// The traffic class a chunk belongs to (read from its header), so a
/// transport with a stream per class (QUIC) can pick the stream.
pub fn class_of(chunk: &[u8]) -> Option<TrafficClass> {
    match chunk.first().map(|f| f & LANE_MASK) {
        Some(0) => Some(TrafficClass::Control),
        Some(1) => Some(TrafficClass::Broadcast),
        Some(2) => Some(TrafficClass::Call),
        _ => None,
    }
}

/// The frame a chunk carries whole (a FIRST and LAST chunk), if it does:
/// for tools that look at frames in flight.
pub fn whole(chunk: &[u8]) -> Option<&[u8]> {
    let flags = *chunk.first()?;
    (flags & (FIRST | LAST) == FIRST | LAST && chunk.len() >= FIRST_HEADER)
        .then(|| &chunk[FIRST_HEADER..])
}

/// Every chunk of one frame, in order: how a peer of another implementation
/// (or a test) sends a frame of `class`.
pub fn chunks(class: TrafficClass, frame: Bytes) -> impl Iterator<Item = Bytes> {
    let lane = lane(class);
    let mut offset = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let (c, n) = encode(lane, &frame, offset);
        offset += n;
        done = offset == frame.len();
        Some(c)
    })
}

/// Builds the chunk carrying `frame[offset..offset + n]`.
fn encode(lane: usize, frame: &Bytes, offset: usize) -> (Bytes, usize) {
    let first = offset == 0;
    let remaining = frame.len() - offset;
    let room = if first {
        MAX_CHUNK - FIRST_HEADER
    } else {
        MAX_CHUNK - 1
    };
    let n = remaining.min(room);
    let last = offset + n == frame.len();
    let mut flags = (lane as u8) & LANE_MASK;
    if first {
        flags |= FIRST;
    }
    if last {
        flags |= LAST;
    }
    let mut out = BytesMut::with_capacity(n + FIRST_HEADER);
    out.put_u8(flags);
    if first {
        // Frames above u32::MAX are refused by every frame limit long before.
        out.put_u32(u32::try_from(frame.len()).unwrap_or(u32::MAX));
    }
    out.extend_from_slice(&frame[offset..offset + n]);
    (out.freeze(), n)
}

/// A chunk sequence that breaks the framing rules: the connection is
/// unusable and must be dropped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Empty message, reserved bits set, or an unknown lane.
    #[error("malformed chunk header")]
    Header,
    /// A continuation chunk without a frame in progress, or a FIRST chunk
    /// while one is.
    #[error("chunk out of sequence on lane {0}")]
    Sequence(usize),
    /// More or fewer bytes than the FIRST chunk announced.
    #[error("frame length mismatch on lane {0}")]
    Length(usize),
}

/// What one chunk completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Completed {
    /// A whole frame.
    Frame(Bytes),
    /// A frame announced larger than the limit was skipped entirely.
    TooLarge(usize),
}

#[derive(Debug, Default)]
enum LaneState {
    #[default]
    Idle,
    Buffering {
        total: usize,
        buf: BytesMut,
    },
    Skipping {
        total: usize,
        remaining: usize,
    },
}

/// Per-connection reassembly of chunks into frames.
#[derive(Debug)]
pub struct Reassembler {
    max_frame: usize,
    lanes: [LaneState; 3],
    /// Decided by the first message: `Some(true)` for whole messages.
    whole: Option<bool>,
}

/// Whether a connection whose first message is `first` carries whole
/// messages (upstream MPREG's JSON) rather than chunks: its first byte has
/// bits that no chunk header sets.
pub fn carries_whole_messages(first: &[u8]) -> bool {
    first.first().is_some_and(|b| b & 0xF0 != 0)
}

impl Reassembler {
    /// Reassembles frames of at most `max_frame` bytes; larger ones are
    /// skipped as their chunks arrive, never buffered.
    pub fn new(max_frame: usize) -> Reassembler {
        Reassembler {
            max_frame,
            lanes: Default::default(),
            whole: None,
        }
    }

    /// The connection carries whole messages (decided by its first one).
    pub fn is_whole(&self) -> bool {
        self.whole == Some(true)
    }

    /// Feeds one transport message.
    pub fn push(&mut self, chunk: Bytes) -> Result<Option<Completed>, ChunkError> {
        let Some(&flags) = chunk.first() else {
            return Err(ChunkError::Header);
        };
        if *self
            .whole
            .get_or_insert_with(|| carries_whole_messages(&chunk))
        {
            return Ok(Some(if chunk.len() > self.max_frame {
                Completed::TooLarge(chunk.len())
            } else {
                Completed::Frame(chunk)
            }));
        }
        let lane = usize::from(flags & LANE_MASK);
        if flags & 0xF0 != 0 || lane > 2 {
            return Err(ChunkError::Header);
        }
        let (first, last) = (flags & FIRST != 0, flags & LAST != 0);
        let state = &mut self.lanes[lane];
        let payload = if first {
            if !matches!(state, LaneState::Idle) {
                return Err(ChunkError::Sequence(lane));
            }
            if chunk.len() < FIRST_HEADER {
                return Err(ChunkError::Header);
            }
            let total = u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]) as usize;
            let payload = chunk.slice(FIRST_HEADER..);
            if total > self.max_frame {
                *state = LaneState::Skipping {
                    total,
                    remaining: total,
                };
            } else if last {
                // The common case: a whole frame in one chunk, no copy.
                if payload.len() != total {
                    return Err(ChunkError::Length(lane));
                }
                return Ok(Some(Completed::Frame(payload)));
            } else {
                *state = LaneState::Buffering {
                    total,
                    buf: BytesMut::with_capacity(total.min(4 * MAX_CHUNK)),
                };
            }
            payload
        } else {
            chunk.slice(1..)
        };
        match state {
            LaneState::Idle => Err(ChunkError::Sequence(lane)),
            LaneState::Buffering { total, buf } => {
                if buf.len() + payload.len() > *total {
                    return Err(ChunkError::Length(lane));
                }
                buf.extend_from_slice(&payload);
                if !last {
                    return Ok(None);
                }
                if buf.len() != *total {
                    return Err(ChunkError::Length(lane));
                }
                let frame = std::mem::take(buf).freeze();
                *state = LaneState::Idle;
                Ok(Some(Completed::Frame(frame)))
            }
            LaneState::Skipping { total, remaining } => {
                if payload.len() > *remaining {
                    return Err(ChunkError::Length(lane));
                }
                *remaining -= payload.len();
                if !last {
                    return Ok(None);
                }
                if *remaining != 0 {
                    return Err(ChunkError::Length(lane));
                }
                let total = *total;
                *state = LaneState::Idle;
                Ok(Some(Completed::TooLarge(total)))
            }
        }
    }
}

#[derive(Debug, Default)]
struct Lane {
    /// Frames, and whether each goes out whole (unchunked).
    frames: VecDeque<(Bytes, bool)>,
    /// Bytes of the front frame already chunked.
    offset: usize,
    bytes: usize,
}

/// One connection's queue of frames, one FIFO lane per [`TrafficClass`]
/// with a byte cap each. [`next_chunk`](Outbox::next_chunk) always takes
/// the next chunk of the highest-priority lane with data, so a control
/// frame waits for at most one chunk of a large call.
#[derive(Debug)]
pub struct Outbox {
    lanes: [Lane; 3],
    caps: [usize; 3],
}

/// The lane's byte cap would be exceeded: the peer is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the connection's queue is full")]
pub struct Full;

impl Outbox {
    /// An empty outbox with byte caps for the control, broadcast and call
    /// lanes.
    pub fn new(caps: [usize; 3]) -> Outbox {
        Outbox {
            lanes: Default::default(),
            caps,
        }
    }

    /// Queues a frame. A frame larger than the cap is accepted into an
    /// empty lane, so every frame the core may produce can be sent.
    pub fn push(&mut self, class: TrafficClass, frame: Bytes) -> Result<(), Full> {
        self.queue(class, frame, false)
    }

    /// Queues a message that goes out as it is, one transport message with
    /// no chunk header (on connections of whole messages).
    pub fn push_whole(&mut self, class: TrafficClass, message: Bytes) -> Result<(), Full> {
        self.queue(class, message, true)
    }

    fn queue(&mut self, class: TrafficClass, frame: Bytes, whole: bool) -> Result<(), Full> {
        let i = lane(class);
        let l = &mut self.lanes[i];
        if !l.frames.is_empty() && l.bytes + frame.len() > self.caps[i] {
            return Err(Full);
        }
        l.bytes += frame.len();
        l.frames.push_back((frame, whole));
        Ok(())
    }

    /// The next chunk to write, if any.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        for (i, l) in self.lanes.iter_mut().enumerate() {
            let Some((front, whole)) = l.frames.front() else {
                continue;
            };
            if *whole {
                l.bytes -= front.len();
                return l.frames.pop_front().map(|(m, _)| m);
            }
            let (c, n) = encode(i, front, l.offset);
            l.offset += n;
            if l.offset == front.len() {
                l.bytes -= front.len();
                l.offset = 0;
                l.frames.pop_front();
            }
            return Some(c);
        }
        None
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.lanes.iter().all(|l| l.frames.is_empty())
    }

    /// Bytes queued in all lanes.
    pub fn queued_bytes(&self) -> usize {
        self.lanes.iter().map(|l| l.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(lane: usize, frame: &Bytes) -> Vec<Bytes> {
        let class = [
            TrafficClass::Control,
            TrafficClass::Broadcast,
            TrafficClass::Call,
        ][lane];
        let out: Vec<Bytes> = super::chunks(class, frame.clone()).collect();
        assert!(out.iter().all(|c| c.len() <= MAX_CHUNK));
        out
    }

    #[test]
    fn small_and_large_frames_round_trip_interleaved() {
        let big = Bytes::from((0..4_000_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let small = Bytes::from_static(b"probe-ack");
        let big_chunks = chunks(2, &big);
        assert_eq!(big_chunks.len(), 4_000_000usize.div_ceil(MAX_CHUNK - 1));
        let mut r = Reassembler::new(16 << 20);
        let mut got = Vec::new();
        for (i, c) in big_chunks.into_iter().enumerate() {
            if i == 3 {
                for s in chunks(0, &small) {
                    got.extend(r.push(s).unwrap());
                }
            }
            got.extend(r.push(c).unwrap());
        }
        assert_eq!(
            got,
            vec![Completed::Frame(small), Completed::Frame(big.clone())]
        );
        let empty = Bytes::new();
        assert_eq!(
            r.push(chunks(1, &empty).remove(0)).unwrap(),
            Some(Completed::Frame(empty))
        );
    }

    #[test]
    fn oversized_frames_are_skipped_without_buffering() {
        let big = Bytes::from(vec![7u8; 300_000]);
        let mut r = Reassembler::new(100_000);
        let mut got = Vec::new();
        for c in chunks(2, &big) {
            got.extend(r.push(c).unwrap());
            assert!(matches!(
                r.lanes[2],
                LaneState::Skipping { .. } | LaneState::Idle
            ));
        }
        assert_eq!(got, vec![Completed::TooLarge(300_000)]);
        // The lane is usable again.
        let ok = Bytes::from_static(b"x");
        assert_eq!(
            r.push(chunks(2, &ok).remove(0)).unwrap(),
            Some(Completed::Frame(ok))
        );
    }

    #[test]
    fn broken_sequences_are_errors_not_panics() {
        let mut r = Reassembler::new(1 << 20);
        assert_eq!(r.push(Bytes::new()), Err(ChunkError::Header));
        // A chunked connection (its first message decides) ...
        let ok = Bytes::from_static(b"x");
        assert_eq!(
            r.push(chunks(0, &ok).remove(0)).unwrap(),
            Some(Completed::Frame(ok))
        );
        assert!(!r.is_whole());
        // ... refuses reserved bits from then on.
        assert_eq!(r.push(Bytes::from_static(&[0xF0])), Err(ChunkError::Header));
        assert_eq!(
            r.push(Bytes::from_static(&[3 | FIRST])),
            Err(ChunkError::Header)
        );
        assert_eq!(
            r.push(Bytes::from_static(&[1, 1, 2])),
            Err(ChunkError::Sequence(1))
        );
        assert_eq!(
            r.push(Bytes::from_static(&[FIRST | LAST, 0, 0, 0, 5, 1])),
            Err(ChunkError::Length(0))
        );
        assert_eq!(
            r.push(Bytes::from_static(&[FIRST, 0, 0, 0, 1, 1, 2])),
            Err(ChunkError::Length(0))
        );
    }

    #[test]
    fn a_connection_opened_by_json_carries_whole_messages_both_ways() {
        let mut r = Reassembler::new(100);
        let req = Bytes::from_static(br#"{"role":"rpc"}"#);
        assert_eq!(r.push(req.clone()).unwrap(), Some(Completed::Frame(req)));
        assert!(r.is_whole());
        // Every later message is a frame as it is, whatever its first byte.
        let odd = Bytes::from_static(&[FIRST | LAST, 1, 2]);
        assert_eq!(r.push(odd.clone()).unwrap(), Some(Completed::Frame(odd)));
        let big = Bytes::from(vec![b'{'; 101]);
        assert_eq!(r.push(big).unwrap(), Some(Completed::TooLarge(101)));
        assert!(carries_whole_messages(b" {") && !carries_whole_messages(&[FIRST | LAST]));
        // Answers go out whole, in priority order with chunked frames.
        let mut o = Outbox::new([1 << 20; 3]);
        let answer = Bytes::from(vec![b'{'; 3 * MAX_CHUNK]);
        o.push_whole(TrafficClass::Call, answer.clone()).unwrap();
        o.push(TrafficClass::Control, Bytes::from_static(b"c"))
            .unwrap();
        assert_eq!(
            class_of(&o.next_chunk().unwrap()),
            Some(TrafficClass::Control)
        );
        assert_eq!(o.next_chunk().unwrap(), answer);
        assert!(o.is_empty() && o.queued_bytes() == 0);
    }

    #[test]
    fn control_overtakes_a_large_call_after_one_chunk() {
        let mut o = Outbox::new([1 << 20, 1 << 20, 8 << 20]);
        o.push(TrafficClass::Call, Bytes::from(vec![1u8; 4 << 20]))
            .unwrap();
        let first = o.next_chunk().unwrap();
        assert_eq!(class_of(&first), Some(TrafficClass::Call));
        o.push(TrafficClass::Control, Bytes::from_static(b"ack"))
            .unwrap();
        let second = o.next_chunk().unwrap();
        assert_eq!(class_of(&second), Some(TrafficClass::Control));
        let rest = std::iter::from_fn(|| o.next_chunk()).count();
        assert_eq!(rest + 1, (4usize << 20).div_ceil(MAX_CHUNK - 1));
        assert!(o.is_empty());
    }

    #[test]
    fn a_full_lane_refuses_frames_but_other_lanes_do_not() {
        let mut o = Outbox::new([100, 100, 100]);
        o.push(TrafficClass::Call, Bytes::from(vec![0u8; 500]))
            .unwrap();
        assert_eq!(
            o.push(TrafficClass::Call, Bytes::from_static(b"x")),
            Err(Full)
        );
        o.push(TrafficClass::Control, Bytes::from(vec![0u8; 60]))
            .unwrap();
        assert_eq!(
            o.push(TrafficClass::Control, Bytes::from(vec![0u8; 60])),
            Err(Full)
        );
        assert_eq!(o.queued_bytes(), 560);
    }
}
