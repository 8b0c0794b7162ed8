//! One connection's plumbing: a bounded, prioritised outbox drained by a
//! writer task, and a reader task that reassembles frames.
//!
//! The outbox has one FIFO lane per [`TrafficClass`] and a byte cap per
//! lane. The writer always sends the next chunk of the highest-priority
//! lane with data, so a control frame waits for at most one 64 KiB chunk of
//! a large call. The drive loop only ever *pushes* (never awaits); a peer
//! that stops reading fills its own outbox, and a full outbox is the drive
//! loop's signal to drop that connection.

use crate::chunk::{self, Completed, Reassembler};
use crate::transport::{MessageSink, MessageStream};
use bytes::Bytes;
use mpreg_proto::TrafficClass;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc};

/// Flush the transport after this many unflushed bytes even if more is
/// queued, so the peer starts reading early.
const FLUSH_EVERY: usize = 256 * 1024;

#[derive(Debug, Default)]
struct Lane {
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already chunked.
    offset: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    lanes: [Lane; 3],
    /// Chunks handed to the writer and not yet flushed.
    unflushed: bool,
    closing: bool,
}

/// The outbox shared by the drive loop (pushing) and a writer (draining).
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    caps: [usize; 3],
}

/// The lane's byte cap would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) enum Next {
    Chunk(Bytes),
    Idle,
    Close,
}

impl Outbox {
    pub(crate) fn new(caps: [usize; 3]) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            caps,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queues
        // inconsistent in a way that matters more than losing the
        // connection, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame. A frame larger than the cap is accepted into an
    /// empty lane, so every frame the core may produce can be sent.
    pub(crate) fn push(&self, class: TrafficClass, frame: Bytes) -> Result<(), Full> {
        let lane = chunk::lane(class);
        {
            let mut s = self.lock();
            let l = &mut s.lanes[lane];
            if !l.frames.is_empty() && l.bytes + frame.len() > self.caps[lane] {
                return Err(Full);
            }
            l.bytes += frame.len();
            l.frames.push_back(frame);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Asks the writer to close the connection once everything queued is
    /// sent.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.notify.notify_one();
    }

    /// Nothing queued and nothing waiting for a flush.
    pub(crate) fn is_idle(&self) -> bool {
        let s = self.lock();
        !s.unflushed && s.lanes.iter().all(|l| l.frames.is_empty())
    }

    /// Bytes queued in each lane.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().lanes.iter().map(|l| l.bytes).sum()
    }

    fn next(&self) -> Next {
        let mut s = self.lock();
        for (i, l) in s.lanes.iter_mut().enumerate() {
            let Some(front) = l.frames.front() else {
                continue;
            };
            let (c, n) = chunk::encode(i, front, l.offset);
            l.offset += n;
            if l.offset == front.len() {
                l.bytes -= front.len();
                l.offset = 0;
                l.frames.pop_front();
            }
            s.unflushed = true;
            return Next::Chunk(c);
        }
        if s.closing { Next::Close } else { Next::Idle }
    }

    fn flushed(&self) {
        let mut s = self.lock();
        if s.lanes.iter().all(|l| l.frames.is_empty()) {
            s.unflushed = false;
        }
    }
}

/// What connection tasks report to their owner.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// A whole frame arrived.
    Frame(Bytes),
    /// A frame announced larger than the limit was skipped.
    TooLarge(usize),
    /// The reader ended: cleanly (`None`) or with an error.
    ReaderDone(Option<String>),
    /// The writer ended: cleanly after a requested close (`None`) or with an
    /// error.
    WriterDone(Option<String>),
}

/// Drains `outbox` into `sink` until asked to close or the sink fails.
pub(crate) async fn run_writer<S: MessageSink, K: Copy + Send + 'static>(
    key: K,
    mut sink: S,
    outbox: Arc<Outbox>,
    tx: mpsc::Sender<(K, ConnEvent)>,
) {
    let result: io::Result<()> = async {
        let mut unflushed = 0usize;
        loop {
            match outbox.next() {
                Next::Chunk(c) => {
                    unflushed += c.len();
                    sink.feed(c).await?;
                    if unflushed >= FLUSH_EVERY {
                        sink.flush().await?;
                        unflushed = 0;
                    }
                }
                Next::Idle => {
                    if unflushed > 0 {
                        sink.flush().await?;
                        unflushed = 0;
                        outbox.flushed();
                        continue;
                    }
                    outbox.notify.notified().await;
                }
                Next::Close => {
                    sink.close().await?;
                    outbox.flushed();
                    return Ok(());
                }
            }
        }
    }
    .await;
    let _ = tx
        .send((
            key,
            ConnEvent::WriterDone(result.err().map(|e| e.to_string())),
        ))
        .await;
}

/// Reads messages, reassembles frames and forwards them.
pub(crate) async fn run_reader<S: MessageStream, K: Copy + Send + 'static>(
    key: K,
    mut stream: S,
    max_frame: usize,
    tx: mpsc::Sender<(K, ConnEvent)>,
) {
    let mut r = Reassembler::new(max_frame);
    let end = loop {
        match stream.recv().await {
            Ok(Some(msg)) => match r.push(msg) {
                Ok(None) => {}
                Ok(Some(Completed::Frame(f))) => {
                    if tx.send((key, ConnEvent::Frame(f))).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Completed::TooLarge(n))) => {
                    if tx.send((key, ConnEvent::TooLarge(n))).await.is_err() {
                        return;
                    }
                }
                Err(e) => break Some(e.to_string()),
            },
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    let _ = tx.send((key, ConnEvent::ReaderDone(end))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &Outbox) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Next::Chunk(c) = o.next() {
            out.push(c);
        }
        out
    }

    #[test]
    fn control_overtakes_a_large_call_after_one_chunk() {
        let o = Outbox::new([1 << 20, 1 << 20, 8 << 20]);
        o.push(TrafficClass::Call, Bytes::from(vec![1u8; 4 << 20]))
            .unwrap();
        let Next::Chunk(first) = o.next() else {
            panic!("a chunk is queued")
        };
        assert_eq!(first[0] & 3, 2);
        o.push(TrafficClass::Control, Bytes::from_static(b"ack"))
            .unwrap();
        let Next::Chunk(second) = o.next() else {
            panic!("a chunk is queued")
        };
        assert_eq!(second[0] & 3, 0, "the control frame goes next");
        let rest = drain(&o);
        assert_eq!(
            rest.len() + 1,
            (4usize << 20).div_ceil(chunk::MAX_CHUNK - 1)
        );
        assert!(!o.is_idle(), "chunks were handed out but not flushed");
        o.flushed();
        assert!(o.is_idle());
    }

    #[test]
    fn a_full_lane_refuses_frames_but_other_lanes_do_not() {
        let o = Outbox::new([100, 100, 100]);
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
