//! One connection's plumbing: the core's [`chunk::Outbox`] shared by the
//! drive loop (pushing, never awaiting) and a writer task (draining), and a
//! reader task that reassembles frames. A peer that stops reading fills its
//! own outbox, and a full outbox is the drive loop's signal to drop that
//! connection.

use crate::transport::{MessageSink, MessageStream};
use bytes::Bytes;
use mpreg_proto::TrafficClass;
use mpreg_proto::chunk::{self, Completed, Full, Reassembler};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc};

/// Flush the transport after this many unflushed bytes even if more is
/// queued, so the peer starts reading early.
const FLUSH_EVERY: usize = 256 * 1024;

#[derive(Debug)]
struct State {
    queue: chunk::Outbox,
    /// Chunks handed to the writer and not yet flushed.
    unflushed: bool,
    closing: bool,
}

/// The outbox shared by the drive loop and a writer.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
}

enum Next {
    Chunk(Bytes),
    Idle,
    Close,
}

impl Outbox {
    pub(crate) fn new(caps: [usize; 3]) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State {
                queue: chunk::Outbox::new(caps),
                unflushed: false,
                closing: false,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue
        // inconsistent in a way that matters more than losing the
        // connection, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame (see [`chunk::Outbox::push`]), or a message that
    /// goes out `whole` ([`chunk::Outbox::push_whole`]).
    pub(crate) fn push(&self, class: TrafficClass, frame: Bytes, whole: bool) -> Result<(), Full> {
        let mut s = self.lock();
        if whole {
            s.queue.push_whole(class, frame)?;
        } else {
            s.queue.push(class, frame)?;
        }
        drop(s);
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
        !s.unflushed && s.queue.is_empty()
    }

    /// Bytes queued.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().queue.queued_bytes()
    }

    fn next(&self) -> Next {
        let mut s = self.lock();
        if let Some(c) = s.queue.next_chunk() {
            s.unflushed = true;
            return Next::Chunk(c);
        }
        if s.closing { Next::Close } else { Next::Idle }
    }

    fn flushed(&self) {
        let mut s = self.lock();
        if s.queue.is_empty() {
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

    #[test]
    fn an_outbox_is_idle_only_once_its_chunks_are_flushed() {
        let o = Outbox::new([1 << 20, 1 << 20, 8 << 20]);
        o.push(TrafficClass::Call, Bytes::from(vec![1u8; 100_000]), false)
            .unwrap();
        assert!(!o.is_idle());
        while let Next::Chunk(_) = o.next() {}
        assert!(!o.is_idle(), "chunks were handed out but not flushed");
        o.flushed();
        assert!(o.is_idle());
        o.close();
        assert!(matches!(o.next(), Next::Close));
    }
}
