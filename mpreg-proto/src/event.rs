//! What the node tells its runtime and application.

use crate::error::CallError;
use crate::id::{Addr, CallId, InvocationId, NodeId};
use crate::metrics::Limit;
use bytes::Bytes;
use compact_str::CompactString;
use semver::Version;
use std::time::Duration;

/// A frame to send.
#[derive(Clone, PartialEq, Eq, Debug)]
#[must_use]
pub struct Transmit {
    /// Destination address.
    pub to: Addr,
    /// The encoded frame.
    pub frame: Bytes,
    /// Queue priority on the connection.
    pub class: TrafficClass,
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

/// A handler to run: the runtime runs it and feeds the result to
/// [`Node::complete_invocation`](crate::Node::complete_invocation).
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

/// Something that happened, in order.
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
    /// Run a handler.
    Invoke(Invocation),
    /// The caller no longer waits for this invocation: the runtime may stop
    /// it; its result will be dropped.
    InvocationCancelled(InvocationId),
    /// A call this node made finished.
    CallDone {
        /// Which call.
        call: CallId,
        /// Its outcome.
        result: Result<Bytes, CallError>,
    },
    /// Keep a connection to this address open (it joined the active view).
    Connect(Addr),
    /// The connection to this address is no longer needed (it left the
    /// active view); close it once its queue is flushed.
    Disconnect(Addr),
    /// A configured limit was hit for the first time (later hits are only
    /// counted in [`Metrics`](crate::Metrics)).
    LimitHit(Limit),
}
