//! What the node tells its runtime ([`Order`]s) and its application
//! ([`Event`]s).

use crate::auth::Refusal;
use crate::error::CallError;
use crate::id::{Addr, CallId, InvocationId, NodeId};
use crate::metrics::Limit;
use crate::multistep::{ManyError, Results};
use crate::node::RequestId;
use bytes::Bytes;
use compact_str::CompactString;
use semver::Version;
use std::time::Duration;

/// A connection's id, chosen by the runtime when it opens one (dialled or
/// accepted) and unique among the node's connections until it reports it
/// closed. The core keys its connection table by it.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnId(pub u64);

/// How a connection ended, as the runtime saw it.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Closed {
    /// A clean close (ordered by this node, or by the peer's close
    /// handshake) with nothing left unsent: no frame was lost.
    Clean,
    /// The peer closed cleanly, so everything it sent arrived, but frames
    /// queued here were never written (so they did not arrive either).
    Unsent,
    /// The connection broke: frames in either direction may be lost.
    Lost,
}

/// A frame to send on an open connection.
#[derive(Clone, PartialEq, Eq, Debug)]
#[must_use]
pub struct Transmit {
    /// The connection.
    pub conn: ConnId,
    /// The encoded frame.
    pub frame: Bytes,
    /// Queue priority on the connection.
    pub class: TrafficClass,
    /// Send `frame` as one transport message, unchunked
    /// ([`chunk::Outbox::push_whole`](crate::chunk::Outbox::push_whole)):
    /// answers to upstream MPREG's JSON clients.
    pub whole: bool,
}

/// Priority of a frame on a connection: control before broadcast before
/// call data, so a large call never holds a probe ack behind it.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum TrafficClass {
    /// Probes, acks, overlay and membership control.
    Control,
    /// Broadcast and anti-entropy.
    Broadcast,
    /// Call requests and responses.
    Call,
}

/// An order to the runtime. Carry them out in the order they come: a
/// `Close` follows the `Send`s queued before it on that connection.
#[derive(Clone, PartialEq, Debug)]
#[must_use]
pub enum Order {
    /// Open a connection to this address; report the outcome with
    /// [`Node::handle_dialed`](crate::Node::handle_dialed) or
    /// [`Node::handle_dial_failed`](crate::Node::handle_dial_failed). The
    /// core gives up on it after `connections.dial_timeout` by itself, so a
    /// late success is only an extra connection.
    Dial(Addr),
    /// Queue a frame on a connection.
    Send(Transmit),
    /// Close a connection once everything queued on it is written, then
    /// report it with [`Node::handle_closed`](crate::Node::handle_closed).
    Close(ConnId),
    /// Drop a connection now, queued frames and all (a close that did not
    /// finish in time), and report it closed.
    Abort(ConnId),
    /// Run a handler; hand its result to
    /// [`Node::complete_invocation`](crate::Node::complete_invocation).
    /// (Boxed: orders are mostly small `Send`s.)
    Invoke(Box<Invocation>),
    /// Stop a running handler if you can: its call was cancelled or its
    /// budget ran out, and the core has answered for it already (a late
    /// result is ignored).
    Cancel(InvocationId),
    /// The node has left and every connection is closed (or given up on):
    /// drop whatever remains and stop driving it.
    Stop,
}

/// A handler to run ([`Order::Invoke`]): the runtime runs it and feeds the
/// result to [`Node::complete_invocation`](crate::Node::complete_invocation).
#[derive(Clone, PartialEq, Debug)]
pub struct Invocation {
    /// Hand this back with the result.
    pub id: InvocationId,
    /// The call being served.
    pub call: CallId,
    /// Function name.
    pub function: CompactString,
    /// The registered version being invoked.
    pub version: Version,
    /// Arguments, as the caller encoded them.
    pub args: Bytes,
    /// Time left in the caller's budget when the call arrived.
    pub budget: Duration,
}

/// News for the application, in the order it happened: membership, the
/// catalog, the outcome of this node's calls, limits hit.
#[derive(Clone, PartialEq, Debug)]
#[must_use]
pub enum Event {
    /// A member is Alive: new, or back from Suspect/Dead.
    MemberUp {
        /// Who.
        id: NodeId,
        /// Where.
        addr: Addr,
    },
    /// A member is suspected of having failed.
    MemberSuspect {
        /// Who.
        id: NodeId,
    },
    /// A member was declared Dead.
    MemberDown {
        /// Who.
        id: NodeId,
    },
    /// A member left gracefully.
    MemberLeft {
        /// Who.
        id: NodeId,
    },
    /// A function became routable on a node.
    FunctionAdded {
        /// The serving node.
        node: NodeId,
        /// Function name.
        name: CompactString,
        /// Version.
        version: Version,
    },
    /// A function stopped being served by a node.
    FunctionRemoved {
        /// The node.
        node: NodeId,
        /// Function name.
        name: CompactString,
        /// Version.
        version: Version,
    },
    /// A call this node made finished.
    CallDone {
        /// Which call.
        call: CallId,
        /// Its outcome.
        result: Result<Bytes, CallError>,
    },
    /// A multi-step call this node made ([`Node::call_many`](crate::Node::call_many)) finished.
    ManyDone {
        /// Which request.
        request: RequestId,
        /// Every command's result by name, or why not.
        result: Result<Results, ManyError>,
    },
    /// A configured limit was hit for the first time (later hits are only
    /// counted in [`Metrics`](crate::Metrics)).
    LimitHit(Limit),
    /// This node's admission policy refused the peer at `addr` (its key,
    /// its proof or its secret); the connection closes.
    PeerRefused {
        /// The peer's connection key.
        addr: Addr,
        /// Why.
        reason: Refusal,
    },
    /// The peer at `addr` refused this node (wrong secret, not on its
    /// allow-list, …); the connection closes.
    RefusedByPeer {
        /// The peer's address.
        addr: Addr,
        /// Why, as the peer said.
        reason: Refusal,
    },
}
