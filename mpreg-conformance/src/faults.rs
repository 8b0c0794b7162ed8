//! Fault injection around any mpreg-tokio [`Transport`]: partitions that
//! stall connections, and a node that speaks a newer protocol version.
//!
//! **Partitions.** Every node's transport is wrapped with its index and a
//! shared [`FaultNet`]. The side that *dialled* a connection knows which
//! node it reaches; while the two are in different groups its sends block
//! (as a TCP send buffer or a QUIC flow-control window eventually does) and
//! the messages it receives are held back — not dropped, not reset: when
//! the partition heals, the connection resumes in order. Dials across the
//! partition wait for the heal (the runtime's dial timeout gives up first,
//! as with SYNs that get no answer).
//!
//! **A newer peer.** A wrapped node with `newer` set rewrites its `Hello`
//! to advertise [`PROTOCOL_VERSION`]` + 1` and, after some of its frames,
//! sends a frame of a message kind no current build knows, [`NEW_KIND`].

use bytes::Bytes;
use mpreg_drive::transport::{Listener, MessageSink, MessageStream, Transport};
use mpreg_proto::wire::{self, Message, PROTOCOL_VERSION};
use mpreg_proto::{Addr, chunk};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The message kind the newer peer sends (unknown to this build).
pub const NEW_KIND: u8 = 200;

/// Groups of a partition: `groups[i]` is node i's group.
type Groups = Option<Arc<Vec<usize>>>;

/// The network all wrapped transports of one cluster share.
#[derive(Debug)]
pub struct FaultNet {
    groups: watch::Sender<Groups>,
    nodes: Mutex<HashMap<String, usize>>,
}

impl Default for FaultNet {
    fn default() -> Self {
        FaultNet {
            groups: watch::channel(None).0,
            nodes: Mutex::new(HashMap::new()),
        }
    }
}

/// `host:port` of a URL.
fn authority(addr: &str) -> &str {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

impl FaultNet {
    /// A shared network.
    pub fn new() -> Arc<FaultNet> {
        Arc::new(FaultNet::default())
    }

    /// Node `i` is reachable at `addr`.
    pub fn add(&self, i: usize, addr: &Addr) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(authority(addr.as_str()).to_string(), i);
    }

    fn index_of(&self, addr: &Addr) -> Option<usize> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(authority(addr.as_str()))
            .copied()
    }

    /// Splits the nodes into groups (unlisted nodes form one more group).
    pub fn partition(&self, groups: &[&[usize]]) {
        let n = groups
            .iter()
            .flat_map(|g| g.iter())
            .max()
            .map_or(0, |m| m + 1)
            .max(self.nodes.lock().unwrap_or_else(|p| p.into_inner()).len());
        let mut g = vec![usize::MAX; n];
        for (gi, members) in groups.iter().enumerate() {
            for &m in *members {
                g[m] = gi;
            }
        }
        self.groups.send_replace(Some(Arc::new(g)));
    }

    /// Ends the partition.
    pub fn heal(&self) {
        self.groups.send_replace(None);
    }

    fn blocked(groups: &Groups, a: usize, b: usize) -> bool {
        groups.as_ref().is_some_and(|g| {
            let ga = g.get(a).copied().unwrap_or(usize::MAX);
            let gb = g.get(b).copied().unwrap_or(usize::MAX);
            ga != gb
        })
    }

    /// Waits until `a` and `b` can reach each other.
    async fn open(&self, a: usize, b: usize) {
        let mut rx = self.groups.subscribe();
        loop {
            if !FaultNet::blocked(&rx.borrow_and_update(), a, b) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Rewrites a `Hello` frame to advertise a newer maximum version; `None`
/// for any other frame.
pub fn newer_hello(frame: &[u8]) -> Option<Vec<u8>> {
    let (header, msg) = wire::decode(frame, usize::MAX, None).ok()?;
    match msg {
        Message::Hello(mut h) => {
            h.max_version = PROTOCOL_VERSION + 1;
            Some(wire::encode(
                &Message::Hello(h),
                header.version,
                header.cluster,
            ))
        }
        _ => None,
    }
}

/// A frame of the new kind, with the header of `like` (same version and
/// cluster).
pub fn new_kind_frame(like: &[u8]) -> Option<Vec<u8>> {
    let header = wire::decode_header(like, usize::MAX, None).ok()?;
    Some(wire::encode_raw(
        NEW_KIND,
        b"a message only newer nodes understand",
        header.version,
        header.cluster,
    ))
}

/// A transport wrapped for fault injection.
#[derive(Clone, Debug)]
pub struct TestTransport<T> {
    inner: T,
    net: Arc<FaultNet>,
    me: usize,
    newer: bool,
}

impl<T: Transport> TestTransport<T> {
    /// Node `me`'s transport on `net`.
    pub fn new(inner: T, net: Arc<FaultNet>, me: usize, newer: bool) -> TestTransport<T> {
        TestTransport {
            inner,
            net,
            me,
            newer,
        }
    }

    fn wrap(
        &self,
        sink: T::Sink,
        stream: T::Stream,
        peer: Option<usize>,
    ) -> (TestSink<T::Sink>, TestStream<T::Stream>) {
        (
            TestSink {
                inner: sink,
                net: self.net.clone(),
                me: self.me,
                peer,
                newer: self.newer.then_some(0),
            },
            TestStream {
                inner: stream,
                net: self.net.clone(),
                me: self.me,
                peer,
            },
        )
    }
}

impl<T: Transport> Transport for TestTransport<T> {
    type Runtime = T::Runtime;
    type Sink = TestSink<T::Sink>;
    type Stream = TestStream<T::Stream>;
    type Listener = TestListener<T::Listener>;
    type Accepting = T::Accepting;

    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }

    fn url(&self, authority: &str) -> Addr {
        self.inner.url(authority)
    }

    async fn bind(&self, host: &str, port: u16) -> io::Result<Self::Listener> {
        Ok(TestListener(self.inner.bind(host, port).await?))
    }

    async fn dial(&self, addr: &Addr, max: usize) -> io::Result<(Self::Sink, Self::Stream)> {
        let peer = self.net.index_of(addr);
        if let Some(p) = peer {
            self.net.open(self.me, p).await;
        }
        let (sink, stream) = self.inner.dial(addr, max).await?;
        Ok(self.wrap(sink, stream, peer))
    }

    async fn handshake(
        &self,
        accepting: T::Accepting,
        max: usize,
    ) -> io::Result<(Self::Sink, Self::Stream)> {
        let (sink, stream) = self.inner.handshake(accepting, max).await?;
        Ok(self.wrap(sink, stream, None))
    }
}

/// A wrapped listener.
#[derive(Debug)]
pub struct TestListener<L>(L);

impl<L: Listener> Listener for TestListener<L> {
    type Accepting = L::Accepting;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(L::Accepting, SocketAddr)> {
        self.0.accept().await
    }
}

/// Sending half: blocks while partitioned; a newer node rewrites and adds.
#[derive(Debug)]
pub struct TestSink<S> {
    inner: S,
    net: Arc<FaultNet>,
    me: usize,
    peer: Option<usize>,
    /// For a newer node: frames sent since the last new-kind frame.
    newer: Option<u32>,
}

impl<S: MessageSink> MessageSink for TestSink<S> {
    async fn feed(&mut self, message: Bytes) -> io::Result<()> {
        if let Some(p) = self.peer {
            self.net.open(self.me, p).await;
        }
        let whole = chunk::whole(&message).zip(chunk::class_of(&message));
        let (Some(count), Some((frame, class))) = (self.newer.as_mut(), whole) else {
            return self.inner.feed(message).await;
        };
        if let Some(h) = newer_hello(frame) {
            for c in chunk::chunks(class, Bytes::from(h)) {
                self.inner.feed(c).await?;
            }
            return Ok(());
        }
        *count += 1;
        let extra = (*count >= 4).then(|| new_kind_frame(frame)).flatten();
        self.inner.feed(message).await?;
        if let Some(f) = extra {
            *count = 0;
            for c in chunk::chunks(class, Bytes::from(f)) {
                self.inner.feed(c).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if let Some(p) = self.peer {
            self.net.open(self.me, p).await;
        }
        self.inner.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        if let Some(p) = self.peer {
            self.net.open(self.me, p).await;
        }
        self.inner.close().await
    }
}

/// Receiving half: holds messages back while partitioned.
#[derive(Debug)]
pub struct TestStream<S> {
    inner: S,
    net: Arc<FaultNet>,
    me: usize,
    peer: Option<usize>,
}

impl<S: MessageStream> MessageStream for TestStream<S> {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        let r = self.inner.recv().await;
        if let Some(p) = self.peer {
            self.net.open(self.me, p).await;
        }
        r
    }
}
