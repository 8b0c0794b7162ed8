//! Link models: what the simulated network does to a frame.
//!
//! * [`LinkModel::Stream`] (the default, since deployments use TCP/QUIC):
//!   one ordered connection per pair of nodes; opening it costs a handshake;
//!   a lost frame is retransmitted after an RTO, delaying it and everything
//!   behind it; a partition stalls the connection until it heals or the
//!   stall outlasts `stall_timeout` (then it breaks, losing its queue, and
//!   both ends are told); dials across a partition or to a silent host time
//!   out.
//! * [`LinkModel::Datagram`]: every frame travels alone; loss drops it,
//!   jitter can reorder, a partition drops everything.

use std::time::Duration;

/// How frames travel.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum LinkModel {
    /// Ordered connections (TCP, QUIC): loss becomes delay.
    #[default]
    Stream,
    /// Independent datagrams (UDP): loss drops frames.
    Datagram,
}

/// One direction's characteristics between two nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// One-way latency.
    pub latency: Duration,
    /// Up to this much extra latency, uniformly random per frame.
    pub jitter: Duration,
    /// Probability a frame is lost (stream: retransmitted after an RTO).
    pub loss: f64,
    /// Bytes per second, or unlimited.
    pub bandwidth: Option<u64>,
}

impl Link {
    /// A lossless link with the given one-way latency and no jitter.
    pub fn latency(latency: Duration) -> Link {
        Link {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            bandwidth: None,
        }
    }

    /// The same link with a loss rate.
    pub fn with_loss(mut self, loss: f64) -> Link {
        self.loss = loss;
        self
    }

    /// The same link with jitter.
    pub fn with_jitter(mut self, jitter: Duration) -> Link {
        self.jitter = jitter;
        self
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::latency(Duration::from_millis(1))
    }
}

/// Network-wide settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Stream or datagram.
    pub model: LinkModel,
    /// The link between nodes of the same zone unless overridden.
    pub default_link: Link,
    /// Round trips a new connection costs before data flows (TCP + the
    /// WebSocket upgrade: 2).
    pub handshake_rtts: u32,
    /// A dial that gets no answer fails after this long.
    pub connect_timeout: Duration,
    /// A connection whose frames have been stuck this long breaks.
    pub stall_timeout: Duration,
    /// Smallest retransmission timeout (Linux: 200 ms).
    pub min_rto: Duration,
    /// Connections neither end keeps (not in an active view) close after
    /// this long without traffic.
    pub idle_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            model: LinkModel::Stream,
            default_link: Link::default(),
            handshake_rtts: 2,
            connect_timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
            min_rto: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(10),
        }
    }
}
