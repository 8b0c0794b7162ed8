//! The fuzzing harness: drives [`Node`]s with inputs decoded from arbitrary
//! bytes and checks invariants after every step.
//!
//! Shared, file for file, by the cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and by the proptest versions in `mpreg-proto/tests/fuzz_invariants.rs`,
//! which include this file by path: it may depend only on `mpreg-proto`,
//! `arbitrary`, `bytes`, `semver` and `compact_str`, and uses none of
//! mpreg-proto's own `Arbitrary` impls (so the tests need no feature).
//!
//! Inputs are drawn from small domains on purpose: ten node ids, a dozen
//! addresses, small incarnations and counters (plus the extremes), four
//! function names. Random 128-bit ids would never collide with the ones a
//! node knows, and collisions are where the interesting states are.
//!
//! Every check is an `assert!`: a violated invariant is a crash to the
//! fuzzer and a failure to proptest.

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use compact_str::CompactString;
use mpreg_proto::catalog::Route;
use mpreg_proto::config::{BridgeConfig, Policy};
use mpreg_proto::wire::{self, Message, Update};
use mpreg_proto::{
    Addr, Call, CallError, CallId, Config, Event, FnBody, FrameError, FunctionSpec, Identity,
    InvocationId, MemberState, Node, NodeId, Status, Time,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The cluster every harness node belongs to.
pub const CLUSTER: &str = "fuzz";
/// The cluster at the other end of bridges.
pub const OTHER: &str = "other";

/// A cluster id: the node's own, the bridged one, a third, or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum Cluster {
    /// The node's own.
    Own,
    /// The bridged one.
    Other,
    /// A third cluster.
    Third,
    /// Anything.
    Any(String),
}

impl Cluster {
    fn get(&self) -> CompactString {
        match self {
            Cluster::Own => CLUSTER.into(),
            Cluster::Other => OTHER.into(),
            Cluster::Third => "third".into(),
            Cluster::Any(s) => s.as_str().into(),
        }
    }
}

fn clusters(v: &[Cluster]) -> Vec<CompactString> {
    v.iter().map(Cluster::get).collect()
}

/// The node ids fuzzed inputs choose from: spread over the id space (so
/// every anti-entropy range level is exercised), with two neighbours that
/// share a top-8-bit range. Index 0 is the node under test.
pub const IDS: [u128; 10] = [
    0x7000_0000_0000_0000_0000_0000_0000_0001,
    0x1000_0000_0000_0000_0000_0000_0000_0000,
    0x2200_0000_0000_0000_0000_0000_0000_0000,
    0x3300_0000_0000_0000_0000_0000_0000_0000,
    0x4400_0000_0000_0000_0000_0000_0000_0000,
    0x9900_0000_0000_0000_0000_0000_0000_0000,
    0xaa00_0000_0000_0000_0000_0000_0000_0000,
    0xff00_0000_0000_0000_0000_0000_0000_0000,
    0x0000_0000_0000_0000_0000_0000_0000_0000,
    0x1000_0000_0000_0000_0000_0000_0000_0001,
];

/// The id with index `i` (mod 10).
pub fn id(i: u8) -> NodeId {
    NodeId::from_u128(IDS[usize::from(i) % IDS.len()])
}

/// The address of the node with index `i`.
pub fn addr(i: u8) -> Addr {
    Addr::new(format!("sim://{}", i % 10))
}

/// A configuration with small caps, so that every limit is reachable by a
/// short input, and short periods, so that every timer fires.
pub fn small_config(seed: u64) -> Config {
    let ms = Duration::from_millis;
    let mut c = Config {
        cluster_id: CLUSTER.into(),
        name: "node".into(),
        rng_seed: seed,
        ..Config::default()
    };
    let m = &mut c.membership;
    m.probe_period = ms(100);
    m.probe_timeout_min = ms(20);
    m.probe_timeout_max = ms(50);
    m.indirect_timeout = ms(60);
    m.suspicion_per_decade = ms(300);
    m.dissemination_allowance = ms(50);
    m.reconnect_window = Duration::from_secs(20);
    m.join_retry_interval = ms(100);
    m.seed_redial_interval = ms(1000);
    let o = &mut c.overlay;
    o.active_view_min = 2;
    o.active_view_max = 4;
    o.passive_view_size = 4;
    o.shuffle_period = ms(1000);
    o.shuffle_size = 2;
    let d = &mut c.dissemination;
    d.graft_timeout = ms(20);
    d.ihave_delay = ms(5);
    d.sync_interval = ms(200);
    d.sync_page_bytes = 1024;
    d.sync_pages_per_exchange = 2;
    c.calls.default_timeout = ms(1000);
    c.calls.max_timeout = ms(5000);
    c.calls.hop_budget = 3;
    let l = &mut c.limits;
    l.max_frame_size = 8192;
    l.max_members = 8;
    l.max_functions_per_node = 3;
    l.max_catalog_entries = 10;
    l.max_pending_calls = 3;
    l.max_invocations = 2;
    l.max_dedup_entries = 4;
    l.max_sessions = 6;
    l.max_missing_updates = 6;
    l.max_queued_transmits = 64;
    l.peer_frames_per_sec = 20;
    l.peer_frame_burst = 40;
    c
}

/// A node of the harness: index `i` in [`IDS`], incarnation 1.
pub fn make_node(cfg: Config, i: u8, now: Time) -> Node {
    let identity = Identity {
        id: id(i),
        addr: addr(i),
        incarnation: 1,
    };
    Node::new(cfg, identity, now).expect("the harness config validates")
}

// ----- small domains ------------------------------------------------------

/// A node id: one of [`IDS`].
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Who(pub u8);

/// An address: a known node's, the node's own, empty, or a stranger's.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Where(pub u8);

impl Where {
    fn addr(self) -> Addr {
        match self.0 % 13 {
            10 => Addr::new(""),
            11 => Addr::new("sim://stranger"),
            12 => Addr::new(format!("sim://{}", "x".repeat(300))),
            i => addr(i),
        }
    }
}

/// An incarnation, epoch or counter: small, or near the top.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    /// 0..=5.
    Small(u8),
    /// `u64::MAX - n` (n < 4).
    Huge(u8),
}

impl Num {
    fn get(self) -> u64 {
        match self {
            Num::Small(n) => u64::from(n % 6),
            Num::Huge(n) => u64::MAX - u64::from(n % 4),
        }
    }
}

/// A member state.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct St(pub u8);

impl St {
    fn get(self) -> MemberState {
        [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Left,
        ][usize::from(self.0 % 4)]
    }
}

/// A name: empty, short, or over the 255-byte limit.
#[derive(Arbitrary, Debug, Clone)]
pub enum Text {
    /// Empty.
    Empty,
    /// One of a few short ones.
    Short(u8),
    /// Anything.
    Any(String),
    /// 300 bytes.
    Long,
}

impl Text {
    fn get(&self, prefix: &str) -> CompactString {
        match self {
            Text::Empty => CompactString::default(),
            Text::Short(n) => format!("{prefix}{}", n % 4).into(),
            Text::Any(s) => s.as_str().into(),
            Text::Long => "y".repeat(300).into(),
        }
    }
}

/// A function version: each part 0..=2.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Ver(pub u8, pub u8, pub u8);

impl Ver {
    fn get(self) -> semver::Version {
        semver::Version::new(
            u64::from(self.0 % 3),
            u64::from(self.1 % 3),
            u64::from(self.2 % 3),
        )
    }
}

/// A version requirement.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Req(pub u8);

impl Req {
    fn get(self) -> Option<semver::VersionReq> {
        let reqs = ["*", "^1", "=1.0.0", ">=0.2, <2", "^2"];
        match usize::from(self.0) % (reqs.len() + 1) {
            0 => None,
            i => semver::VersionReq::parse(reqs[i - 1]).ok(),
        }
    }
}

fn resources(r: &[u8]) -> BTreeSet<CompactString> {
    r.iter().map(|x| format!("r{}", x % 3).into()).collect()
}

/// A catalog entry body: a local function, or a route to another cluster.
#[derive(Arbitrary, Debug, Clone)]
pub struct Body {
    res: Vec<u8>,
    idempotent: bool,
    route: Option<(Cluster, Vec<Cluster>, Vec<Vec<u8>>)>,
}

impl Body {
    fn get(&self) -> FnBody {
        FnBody {
            resources: resources(&self.res),
            idempotent: self.idempotent,
            route: self.route.as_ref().map(|(c, path, sets)| Route {
                cluster: c.get(),
                path: clusters(path),
                sets: sets.iter().map(|s| resources(s)).collect(),
            }),
        }
    }

    fn scope(&self) -> CompactString {
        self.route.as_ref().map(|r| r.0.get()).unwrap_or_default()
    }
}

/// A member record.
#[derive(Arbitrary, Debug, Clone)]
pub struct Rec {
    who: Who,
    at: Where,
    /// Whether the address is the one that goes with the id.
    true_addr: bool,
    inc: Num,
    state: St,
    accusers: Vec<Who>,
    name: Text,
}

impl Rec {
    fn get(&self) -> wire::MemberRecord {
        wire::MemberRecord {
            id: id(self.who.0),
            addr: if self.true_addr {
                addr(self.who.0)
            } else {
                self.at.addr()
            },
            incarnation: self.inc.get(),
            state: self.state.get(),
            accusers: self.accusers.iter().map(|w| id(w.0)).collect(),
            name: self.name.get("n"),
        }
    }
}

/// A catalog entry.
#[derive(Arbitrary, Debug, Clone)]
pub struct Entry {
    name: Text,
    ver: Ver,
    counter: Num,
    body: Option<Body>,
    /// A scope of its own (else the body's, as a well-formed entry has).
    scope: Option<Cluster>,
}

/// A replicated update.
#[derive(Arbitrary, Debug, Clone)]
pub enum Upd {
    /// A member record.
    Member(Rec),
    /// A catalog delta.
    Catalog {
        /// Whose.
        owner: Who,
        /// Epoch.
        epoch: Num,
        /// Tombstone floor.
        floor: Num,
        /// A complete snapshot?
        complete: bool,
        /// Entries.
        entries: Vec<Entry>,
    },
}

impl Upd {
    fn get(&self) -> Update {
        match self {
            Upd::Member(r) => Update::Member(r.get()),
            Upd::Catalog {
                owner,
                epoch,
                floor,
                complete,
                entries,
            } => Update::Catalog(wire::CatalogDelta {
                owner: id(owner.0),
                epoch: epoch.get(),
                floor: floor.get(),
                complete: *complete,
                entries: entries
                    .iter()
                    .map(|e| wire::CatalogEntry {
                        name: e.name.get("f"),
                        version: e.ver.get(),
                        counter: e.counter.get(),
                        scope: match (&e.scope, &e.body) {
                            (Some(c), _) => c.get(),
                            (None, Some(b)) => b.scope(),
                            (None, None) => CompactString::default(),
                        },
                        body: e.body.as_ref().map(Body::get),
                    })
                    .collect(),
            }),
        }
    }
}

/// An update id.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum UpdId {
    /// A member version.
    Member(Who, Num, St),
    /// A catalog version.
    Catalog(Who, Num, Num),
}

impl UpdId {
    fn get(self) -> wire::UpdateId {
        match self {
            UpdId::Member(w, n, s) => wire::UpdateId::Member {
                id: id(w.0),
                incarnation: n.get(),
                state: s.get(),
            },
            UpdId::Catalog(w, e, c) => wire::UpdateId::Catalog {
                owner: id(w.0),
                epoch: e.get(),
                counter: c.get(),
            },
        }
    }
}

/// A call id: possibly one of the node's own.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Cid {
    origin: Who,
    inc: Num,
    seq: u8,
}

impl Cid {
    fn get(self) -> CallId {
        CallId {
            origin: id(self.origin.0),
            incarnation: self.inc.get(),
            seq: u64::from(self.seq % 8),
        }
    }
}

/// A call outcome.
#[derive(Arbitrary, Debug, Clone)]
pub enum Outcome {
    /// A result.
    Ok(Vec<u8>),
    /// The handler failed.
    Failed(String),
    /// The provider was overloaded (the caller retries elsewhere).
    Overloaded,
    /// Timed out.
    Timeout,
    /// Not found.
    NotFound,
    /// The call reached a node other than the one it was sent to.
    NotHere,
}

impl Outcome {
    fn get(&self) -> std::result::Result<Bytes, CallError> {
        match self {
            Outcome::Ok(b) => Ok(Bytes::from(b.clone())),
            Outcome::Failed(s) => Err(CallError::HandlerFailed(s.clone())),
            Outcome::Overloaded => Err(CallError::Overloaded),
            Outcome::Timeout => Err(CallError::Timeout),
            Outcome::NotFound => Err(CallError::NotFound("f0".into())),
            Outcome::NotHere => Err(CallError::NotHere),
        }
    }
}

/// A peer as a shuffle carries it.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PeerA(Who, Where);

impl PeerA {
    fn get(self) -> wire::PeerInfo {
        wire::PeerInfo {
            id: id(self.0.0),
            addr: self.1.addr(),
        }
    }
}

/// Every message of the protocol, over the small domains.
#[derive(Arbitrary, Debug, Clone)]
pub enum Msg {
    Hello {
        who: Who,
        inc: Num,
        at: Where,
        min: u8,
        max: u8,
        other_cluster: bool,
        client: bool,
    },
    Ping(u8),
    Ack(u8, u32),
    PingReq(u8, Who, Where),
    IndirectAck(u8),
    Nack(u8),
    Join(Rec),
    ForwardJoin(Rec, u8),
    Neighbor(Rec, bool),
    NeighborReply(bool),
    Disconnect,
    Shuffle(PeerA, u8, Vec<PeerA>),
    ShuffleReply(Vec<PeerA>),
    Gossip(Vec<Upd>),
    IHave(Vec<UpdId>),
    Graft(Vec<UpdId>),
    Prune,
    SyncRanges(u8, Vec<(u16, u64, u32)>),
    SyncSummaries(u8, Vec<u16>, Vec<(Who, u64)>),
    SyncPull(Vec<Who>),
    SyncUpdates(Vec<Upd>),
    Call(CallReq),
    Response(Cid, Outcome, u32),
    Cancel(Cid),
    ClientCall {
        token: u64,
        function: Text,
        req: Req,
        locs: Vec<u8>,
        args: Vec<u8>,
        budget_us: u32,
        target: Option<Cluster>,
    },
    ClientReply(u64, Outcome),
    ClientQuery(u64, bool),
    ClientAnswer(u64),
    BridgeHello(Who, Where, Cluster),
    BridgeReject(Text),
    Summary(Num, Vec<RouteAd>),
    FedCall(CallReq),
    FedResponse(Cid, Outcome, u32),
}

/// A call request (member or bridged).
#[derive(Arbitrary, Debug, Clone)]
pub struct CallReq {
    id: Cid,
    function: Text,
    req: Req,
    locs: Vec<u8>,
    args: Vec<u8>,
    budget_us: u32,
    hops: u8,
    target: Option<Cluster>,
    path: Vec<Cluster>,
    executor: Option<Who>,
}

impl CallReq {
    fn get(&self) -> wire::CallRequest {
        wire::CallRequest {
            id: self.id.get(),
            function: self.function.get("f"),
            version_req: self.req.get(),
            locs: resources(&self.locs),
            args: Bytes::from(self.args.clone()),
            budget_us: u64::from(self.budget_us),
            hop_budget: self.hops,
            target_cluster: self.target.as_ref().map(Cluster::get),
            path: clusters(&self.path),
            executor: self.executor.map(|w| id(w.0)),
        }
    }
}

/// A route in a cluster summary.
#[derive(Arbitrary, Debug, Clone)]
pub struct RouteAd {
    path: Vec<Cluster>,
    functions: Vec<(Text, Ver, Vec<Vec<u8>>, bool)>,
}

impl RouteAd {
    fn get(&self) -> wire::RouteAd {
        wire::RouteAd {
            path: clusters(&self.path),
            functions: self
                .functions
                .iter()
                .map(|(name, ver, sets, idempotent)| wire::FnAd {
                    name: name.get("f"),
                    version: ver.get(),
                    sets: sets.iter().map(|s| resources(s)).collect(),
                    idempotent: *idempotent,
                })
                .collect(),
        }
    }
}

impl Msg {
    /// The protocol message.
    pub fn get(&self) -> Message {
        let ids = |v: &[UpdId]| v.iter().map(|i| i.get()).collect();
        let ups = |v: &[Upd]| v.iter().map(Upd::get).collect();
        match self {
            Msg::Hello {
                who,
                inc,
                at,
                min,
                max,
                other_cluster,
                client,
            } => Message::Hello(wire::Hello {
                node: id(who.0),
                incarnation: inc.get(),
                addr: at.addr(),
                min_version: *min % 3,
                max_version: *max % 3,
                cluster_id: if *other_cluster { "other" } else { CLUSTER }.into(),
                role: if *client {
                    wire::Role::Client
                } else {
                    wire::Role::Member
                },
            }),
            Msg::Ping(s) => Message::Ping(u32::from(*s)),
            Msg::Ack(s, load) => Message::Ack(wire::Ack {
                seq: u32::from(*s),
                load: *load,
            }),
            Msg::PingReq(s, w, a) => Message::PingReq(wire::PingReq {
                seq: u32::from(*s),
                target: id(w.0),
                addr: a.addr(),
            }),
            Msg::IndirectAck(s) => Message::IndirectAck(u32::from(*s)),
            Msg::Nack(s) => Message::Nack(u32::from(*s)),
            Msg::Join(r) => Message::Join(r.get()),
            Msg::ForwardJoin(r, ttl) => Message::ForwardJoin(wire::ForwardJoin {
                joiner: r.get(),
                ttl: *ttl % 8,
            }),
            Msg::Neighbor(r, high) => Message::Neighbor(wire::Neighbor {
                sender: r.get(),
                high_priority: *high,
            }),
            Msg::NeighborReply(ok) => Message::NeighborReply(*ok),
            Msg::Disconnect => Message::Disconnect,
            Msg::Shuffle(origin, ttl, sample) => Message::Shuffle(wire::Shuffle {
                origin: origin.get(),
                ttl: *ttl % 4,
                sample: sample.iter().map(|p| p.get()).collect(),
            }),
            Msg::ShuffleReply(s) => Message::ShuffleReply(s.iter().map(|p| p.get()).collect()),
            Msg::Gossip(u) => Message::Gossip(ups(u)),
            Msg::IHave(i) => Message::IHave(ids(i)),
            Msg::Graft(i) => Message::Graft(ids(i)),
            Msg::Prune => Message::Prune,
            Msg::SyncRanges(level, r) => Message::SyncRanges(wire::SyncRanges {
                level: *level % 4,
                ranges: r
                    .iter()
                    .map(|(index, hash, count)| wire::RangeDigest {
                        index: *index % 300,
                        hash: wire::H64(*hash),
                        count: *count % 12,
                    })
                    .collect(),
            }),
            Msg::SyncSummaries(level, ranges, members) => {
                Message::SyncSummaries(wire::SyncSummaries {
                    level: *level % 4,
                    ranges: ranges.iter().map(|r| *r % 300).collect(),
                    members: members
                        .iter()
                        .map(|(w, h)| (id(w.0), wire::H64(*h)))
                        .collect(),
                })
            }
            Msg::SyncPull(w) => Message::SyncPull(w.iter().map(|w| id(w.0)).collect()),
            Msg::SyncUpdates(u) => Message::SyncUpdates(ups(u)),
            Msg::Call(c) => Message::Call(c.get()),
            Msg::Response(c, o, load) => Message::Response(wire::CallResponse {
                id: c.get(),
                result: o.get(),
                load: *load,
            }),
            Msg::Cancel(c) => Message::Cancel(c.get()),
            Msg::ClientCall {
                token,
                function,
                req,
                locs,
                args,
                budget_us,
                target,
            } => Message::ClientCall(wire::ClientCall {
                token: *token,
                function: function.get("f"),
                version_req: req.get(),
                locs: resources(locs),
                args: Bytes::from(args.clone()),
                budget_us: u64::from(*budget_us),
                target_cluster: target.as_ref().map(Cluster::get),
            }),
            Msg::ClientReply(t, o) => Message::ClientReply(wire::ClientReply {
                token: *t,
                result: o.get(),
            }),
            Msg::ClientQuery(t, members) => Message::ClientQuery((
                *t,
                if *members {
                    wire::Query::Members
                } else {
                    wire::Query::Catalog
                },
            )),
            Msg::ClientAnswer(t) => Message::ClientAnswer((*t, wire::QueryAnswer::Members(vec![]))),
            Msg::BridgeHello(w, at, c) => Message::BridgeHello(wire::BridgeHello {
                node: id(w.0),
                addr: at.addr(),
                cluster_id: c.get(),
            }),
            Msg::BridgeReject(t) => Message::BridgeReject(t.get("why")),
            Msg::Summary(v, routes) => Message::Summary(wire::ClusterSummary {
                version: v.get(),
                routes: routes.iter().map(RouteAd::get).collect(),
            }),
            Msg::FedCall(c) => Message::FedCall(c.get()),
            Msg::FedResponse(c, o, load) => Message::FedResponse(wire::CallResponse {
                id: c.get(),
                result: o.get(),
                load: *load,
            }),
        }
    }
}

/// How a structured message is framed.
#[derive(Arbitrary, Debug, Clone)]
pub enum Framing {
    /// As a peer of the cluster would.
    Normal,
    /// With the wildcard cluster tag clients use.
    Wildcard,
    /// With another cluster's tag.
    OtherCluster,
    /// With a header version byte of its own.
    Version(u8),
    /// With flag bits set.
    Flags(u8),
    /// With bytes appended (a newer peer's extra fields).
    Trailer(Vec<u8>),
    /// Truncated to this many bytes.
    Truncate(u16),
    /// With bytes overwritten.
    Corrupt(Vec<(u16, u8)>),
}

/// Encodes `msg` as `framing` says.
pub fn frame(msg: &Message, framing: &Framing) -> Vec<u8> {
    let tag = wire::cluster_tag(CLUSTER);
    let v = wire::PROTOCOL_VERSION;
    match framing {
        Framing::Normal => wire::encode(msg, v, tag),
        Framing::Wildcard => wire::encode(msg, v, wire::ANY_CLUSTER),
        Framing::OtherCluster => wire::encode(msg, v, wire::cluster_tag(OTHER)),
        Framing::Version(x) => wire::encode(msg, *x, tag),
        Framing::Flags(f) => {
            let mut b = wire::encode(msg, v, tag);
            b[3] = *f;
            b
        }
        Framing::Trailer(t) => {
            let mut b = wire::encode(msg, v, tag);
            b.extend_from_slice(t);
            b
        }
        Framing::Truncate(n) => {
            let mut b = wire::encode(msg, v, tag);
            b.truncate(usize::from(*n));
            b
        }
        Framing::Corrupt(edits) => {
            let mut b = wire::encode(msg, v, tag);
            if !b.is_empty() {
                let len = b.len();
                for (at, x) in edits {
                    b[usize::from(*at) % len] = *x;
                }
            }
            b
        }
    }
}

// ----- local inputs ---------------------------------------------------------

/// How far the clock moves.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Advance {
    /// To the node's next deadline.
    ToDeadline,
    /// By a few milliseconds.
    Millis(u8),
    /// By a few seconds.
    Secs(u8),
    /// Past the reconnect window.
    Minutes(u8),
}

/// A command from the application.
#[derive(Arbitrary, Debug, Clone)]
pub enum Local {
    /// `register`.
    Register {
        name: Text,
        ver: Ver,
        res: Vec<u8>,
        idempotent: bool,
    },
    /// `unregister`.
    Unregister(Text, Ver),
    /// `call`.
    Call {
        function: Text,
        req: Req,
        locs: Vec<u8>,
        big_args: bool,
        timeout_ms: Option<u16>,
        target: Option<Cluster>,
    },
    /// `cancel` of one of the node's calls (or an unknown one).
    Cancel(u8),
    /// `complete_invocation` of one of the running handlers.
    Complete { pick: u8, ok: bool, big: bool },
    /// `complete_invocation` of an unknown invocation.
    CompleteUnknown(u64),
    /// `drain`.
    Drain,
    /// `bridge` to a cluster through seeds.
    Bridge(Cluster, Vec<Where>),
}

/// One input to a single node.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    /// A structured message from an address.
    Frame(Where, Msg, Framing),
    /// Raw bytes from an address.
    Raw(Where, Vec<u8>),
    /// A plausible answer from the peer to one of the node's recent frames.
    Reply(u8, bool),
    /// The peer at this index sends its `Hello` (a handshake).
    Handshake(Who),
    /// The clock moves; due timers fire.
    Advance(Advance),
    /// A connection opened.
    Connected(Where),
    /// A connection closed cleanly.
    Closed(Where),
    /// A connection broke.
    Unreachable(Where),
    /// `join` through seeds.
    Join(Vec<Where>),
    /// `leave`.
    Leave,
    /// `import` of a snapshot.
    Import(Vec<Upd>),
    /// A command.
    Local(Local),
}

// ----- invariants -----------------------------------------------------------

/// Tracks what a node showed before, to check that versions never go back.
#[derive(Debug, Default)]
pub struct Checker {
    incarnation: u64,
    versions: BTreeMap<NodeId, (u64, MemberState)>,
    left: bool,
}

impl Checker {
    /// Checks every invariant of `node` (configured as `node.config()`).
    pub fn check(&mut self, node: &Node) {
        let l = &node.config().limits;
        let me = node.id();
        let members: Vec<_> = node.members().collect();
        // Caps.
        assert!(
            members.len() <= l.max_members,
            "{} members > cap {}",
            members.len(),
            l.max_members
        );
        let cat = node.catalog();
        assert!(
            cat.total_entries() <= l.max_catalog_entries,
            "{} catalog entries > cap {}",
            cat.total_entries(),
            l.max_catalog_entries
        );
        let state = node.replicated_state();
        let mut record_ids = Vec::new();
        for u in &state {
            match u {
                Update::Member(r) => record_ids.push(r.id),
                Update::Catalog(d) => assert!(
                    d.entries.len() <= l.max_functions_per_node,
                    "{} entries of {:?} > per-node cap {}",
                    d.entries.len(),
                    d.owner,
                    l.max_functions_per_node
                ),
            }
        }
        assert!(
            node.pending_calls() <= l.max_pending_calls,
            "{} pending calls > cap {}",
            node.pending_calls(),
            l.max_pending_calls
        );
        assert!(node.running_invocations() <= l.max_invocations);
        assert!(
            node.session_count() <= l.max_sessions,
            "{} sessions > cap {}",
            node.session_count(),
            l.max_sessions
        );
        assert!(
            node.queued_transmits() <= l.max_queued_transmits,
            "{} queued transmits > cap {}",
            node.queued_transmits(),
            l.max_queued_transmits
        );
        assert!(node.passive_view_len() <= node.config().overlay.passive_view_size);
        for a in node.active_view() {
            assert!(
                members.iter().any(|m| m.id == a && m.state.is_live()),
                "active peer {a:?} is not a live member"
            );
        }
        // Every timer is keyed by something bounded: a member (probe,
        // suspicion), a probe in flight, a pending call, a remembered
        // execution, or one of five periodic ones.
        let timer_cap = 5
            + 2 * l.max_members
            + l.max_pending_calls
            + l.max_dedup_entries
            + 2 * l.max_sessions * l.peer_frame_burst as usize;
        assert!(
            node.timer_count() <= timer_cap,
            "{} timers > {timer_cap}",
            node.timer_count()
        );
        // Views agree with each other.
        let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids, record_ids, "members() and replicated_state() differ");
        assert_eq!(node.state_digest().1 as usize, members.len());
        let live = members.iter().filter(|m| m.state.is_live()).count();
        assert_eq!(node.live_members(), live);
        let counts = node.member_counts();
        assert_eq!(counts.iter().sum::<usize>(), members.len());
        for p in cat.functions().flat_map(|(_, ps)| ps) {
            assert!(ids.contains(&p.node), "catalog entry of a non-member");
        }
        // A node never marks itself Dead; its own record is Alive until it
        // leaves, and carries its incarnation.
        let own = members
            .iter()
            .find(|m| m.id == me)
            .expect("a node always knows itself");
        assert_ne!(own.state, MemberState::Dead, "a node marked itself Dead");
        let left = node.status() == Status::Left;
        assert!(!self.left || left, "a node came back from Left");
        self.left = left;
        let want = if left {
            MemberState::Left
        } else {
            MemberState::Alive
        };
        assert_eq!(own.state, want, "own record");
        assert_eq!(own.incarnation, node.incarnation());
        // Versions never go backwards.
        assert!(
            node.incarnation() >= self.incarnation,
            "own incarnation went from {} to {}",
            self.incarnation,
            node.incarnation()
        );
        self.incarnation = node.incarnation();
        let mut now = BTreeMap::new();
        for m in &members {
            let v = (m.incarnation, m.state);
            if let Some(old) = self.versions.get(&m.id) {
                assert!(v >= *old, "member {:?} went from {old:?} to {v:?}", m.id);
            }
            now.insert(m.id, v);
        }
        for (id, old) in &self.versions {
            if !now.contains_key(id) {
                assert!(
                    matches!(old.1, MemberState::Dead | MemberState::Left),
                    "member {id:?} forgotten while {:?}",
                    old.1
                );
            }
        }
        self.versions = now;
    }
}

// ----- one node -------------------------------------------------------------

/// The federation setup of a node under test.
#[derive(Arbitrary, Debug, Clone)]
pub enum Fed {
    /// No bridges (the default).
    Strict,
    /// Bridges with any cluster; one configured to the other cluster.
    Permissive(bool),
    /// Bridges with the other cluster only, some functions each way.
    Explicit(bool),
}

impl Fed {
    /// Sets the config's federation section.
    pub fn apply(&self, c: &mut Config) {
        let (policy, dial) = match self {
            Fed::Strict => (Policy::Strict, false),
            Fed::Permissive(dial) => (Policy::Permissive, *dial),
            Fed::Explicit(dial) => (
                Policy::Explicit {
                    allow: vec![OTHER.into()],
                    export: vec!["f*".into()],
                    import: vec!["f0".into(), "f1".into(), "*2".into()],
                },
                *dial,
            ),
        };
        c.federation.policy = policy;
        if dial {
            c.federation.bridges.push(BridgeConfig {
                cluster: OTHER.into(),
                seeds: vec![addr(7)],
            });
        }
    }
}

/// A node fed arbitrary inputs, checked after every step.
#[derive(Debug)]
pub struct Single {
    /// The node under test.
    pub node: Node,
    /// The clock.
    pub now: Time,
    checker: Checker,
    calls: Vec<CallId>,
    invocations: Vec<InvocationId>,
    /// Recent frames the node sent: (to, message).
    recent: VecDeque<(Addr, Message)>,
}

impl Single {
    /// A node with the small config and a federation policy.
    pub fn new(seed: u64, fed: &Fed) -> Single {
        let mut cfg = small_config(seed);
        fed.apply(&mut cfg);
        let node = make_node(cfg, 0, Time::ZERO);
        let mut s = Single {
            node,
            now: Time::ZERO,
            checker: Checker::default(),
            calls: Vec::new(),
            invocations: Vec::new(),
            recent: VecDeque::new(),
        };
        s.after();
        s
    }

    /// Runs every step decoded from `u`.
    pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
        let (seed, fed): (u64, Fed) = u.arbitrary()?;
        let mut s = Single::new(seed, &fed);
        let trace = std::env::var_os("MPREG_FUZZ_TRACE").is_some();
        while !u.is_empty() {
            let step: Step = u.arbitrary()?;
            if trace {
                eprintln!("{:?} {step:?}", s.now);
            }
            s.step(&step);
        }
        Ok(())
    }

    /// A frame from `from`; checks that a rejected frame changes nothing.
    pub fn feed(&mut self, from: &Addr, bytes: &[u8]) {
        let before = (
            self.node.state_digest(),
            self.node.incarnation(),
            self.node.pending_calls(),
            self.node.status(),
        );
        let out = self.node.queued_transmits();
        if let Err(e) = self.node.handle_frame(self.now, from, bytes) {
            let after = (
                self.node.state_digest(),
                self.node.incarnation(),
                self.node.pending_calls(),
                self.node.status(),
            );
            assert_eq!(before, after, "a rejected frame changed the node");
            // A call beyond the sender's rate is answered Overloaded (one
            // frame, after a Hello if the node never spoke to the sender);
            // any other rejected frame sends nothing.
            let answers = if matches!(e, FrameError::RateLimited) {
                2
            } else {
                0
            };
            let sent = self.node.queued_transmits().saturating_sub(out);
            assert!(sent <= answers, "a rejected frame ({e}) sent {sent} frames");
        }
    }

    /// Applies one step, checks the invariants, drains the outputs.
    pub fn step(&mut self, step: &Step) {
        let now = self.now;
        match step {
            Step::Frame(from, msg, framing) => {
                let bytes = frame(&msg.get(), framing);
                self.feed(&from.addr(), &bytes);
            }
            Step::Raw(from, bytes) => self.feed(&from.addr(), bytes),
            Step::Reply(pick, good) => {
                if let Some((to, reply)) = self.reply(*pick, *good) {
                    // Bridge peers speak with their own cluster's tag.
                    let bridged = self.node.bridges().iter().any(|b| b.0 == to)
                        || matches!(reply, Message::BridgeHello(_));
                    let framing = if bridged {
                        Framing::OtherCluster
                    } else {
                        Framing::Normal
                    };
                    let bytes = frame(&reply, &framing);
                    self.feed(&to, &bytes);
                }
            }
            Step::Handshake(w) => {
                let i = w.0 % 10;
                let hello = Message::Hello(wire::Hello {
                    node: id(i),
                    incarnation: 1,
                    addr: addr(i),
                    min_version: wire::MIN_PROTOCOL_VERSION,
                    max_version: wire::PROTOCOL_VERSION,
                    cluster_id: CLUSTER.into(),
                    role: wire::Role::Member,
                });
                self.feed(&addr(i), &frame(&hello, &Framing::Normal));
            }
            Step::Advance(a) => {
                self.now = advance(self.now, *a, self.node.poll_timeout());
                self.node.handle_timeout(self.now);
            }
            Step::Connected(w) => self.node.handle_connected(now, &w.addr()),
            Step::Closed(w) => self.node.handle_closed(now, &w.addr()),
            Step::Unreachable(w) => self.node.handle_unreachable(now, &w.addr()),
            Step::Join(seeds) => self.node.join(now, seeds.iter().map(|w| w.addr())),
            Step::Leave => self.node.leave(now),
            Step::Import(u) => {
                let updates: Vec<Update> = u.iter().map(Upd::get).collect();
                self.node.import(now, &updates);
            }
            Step::Local(l) => local(
                &mut self.node,
                now,
                l,
                &mut self.calls,
                &mut self.invocations,
            ),
        }
        self.after();
    }

    fn after(&mut self) {
        self.checker.check(&self.node);
        let max = self.node.config().limits.max_frame_size;
        while let Some(t) = self.node.poll_transmit() {
            assert!(t.frame.len() <= max, "a frame over the limit went out");
            assert_ne!(&t.to, self.node.addr(), "a node sent to itself");
            // Everything a node sends decodes.
            let (_, msg) = wire::decode(&t.frame, max, None).expect("own frames decode");
            if self.recent.len() == 16 {
                self.recent.pop_front();
            }
            self.recent.push_back((t.to, msg));
        }
        drain_events(&mut self.node, &mut self.calls, &mut self.invocations);
    }

    /// What the addressee of a recent frame might answer.
    fn reply(&mut self, pick: u8, good: bool) -> Option<(Addr, Message)> {
        if self.recent.is_empty() {
            return None;
        }
        let i = usize::from(pick) % self.recent.len();
        let (to, msg) = self.recent.remove(i)?;
        let peer = (0..10u8).find(|i| addr(*i) == to).map(id);
        let m = match msg {
            Message::Hello(_) | Message::Join(_) => Message::Hello(wire::Hello {
                node: peer?,
                incarnation: 1,
                addr: to.clone(),
                min_version: wire::MIN_PROTOCOL_VERSION,
                max_version: wire::PROTOCOL_VERSION,
                cluster_id: CLUSTER.into(),
                role: wire::Role::Member,
            }),
            Message::Ping(seq) => Message::Ack(wire::Ack { seq, load: 0 }),
            Message::PingReq(r) if good => Message::IndirectAck(r.seq),
            Message::PingReq(r) => Message::Nack(r.seq),
            Message::Neighbor(_) => Message::NeighborReply(good),
            Message::Call(c) => Message::Response(wire::CallResponse {
                id: c.id,
                result: if good {
                    Ok(c.args)
                } else {
                    Err(CallError::Overloaded)
                },
                load: 1,
            }),
            Message::FedCall(c) => Message::FedResponse(wire::CallResponse {
                id: c.id,
                result: if good {
                    Ok(c.args)
                } else {
                    Err(CallError::Unreachable)
                },
                load: 1,
            }),
            Message::BridgeHello(_) if good => Message::BridgeHello(wire::BridgeHello {
                node: peer?,
                addr: to.clone(),
                cluster_id: OTHER.into(),
            }),
            Message::BridgeHello(_) => Message::BridgeReject("no".into()),
            Message::Summary(_) => Message::Summary(wire::ClusterSummary {
                version: 1,
                routes: vec![wire::RouteAd {
                    path: vec![OTHER.into()],
                    functions: vec![wire::FnAd {
                        name: "f0".into(),
                        version: semver::Version::new(1, 0, 0),
                        sets: vec![resources(&[0])],
                        idempotent: true,
                    }],
                }],
            }),
            Message::SyncRanges(r) if good => Message::SyncRanges(wire::SyncRanges {
                level: r.level,
                ranges: r
                    .ranges
                    .iter()
                    .map(|d| wire::RangeDigest {
                        index: d.index,
                        hash: wire::H64(0),
                        count: 0,
                    })
                    .collect(),
            }),
            Message::SyncRanges(r) => Message::SyncRanges(wire::SyncRanges {
                level: r.level.saturating_add(1),
                ranges: r
                    .ranges
                    .iter()
                    .map(|d| wire::RangeDigest {
                        index: d.index.wrapping_mul(16),
                        hash: wire::H64(1),
                        count: 3,
                    })
                    .collect(),
            }),
            Message::SyncSummaries(s) => {
                Message::SyncPull(s.members.iter().map(|(id, _)| *id).collect())
            }
            Message::IHave(ids) => Message::Graft(ids),
            Message::Graft(_) | Message::Gossip(_) => Message::Prune,
            Message::Shuffle(s) => Message::ShuffleReply(s.sample),
            _ => return None,
        };
        Some((to, m))
    }
}

/// The clock after `a`.
pub fn advance(now: Time, a: Advance, deadline: Option<Time>) -> Time {
    let to = match a {
        Advance::ToDeadline => deadline.unwrap_or(now).max(now),
        Advance::Millis(n) => now + Duration::from_millis(u64::from(n)),
        Advance::Secs(n) => now + Duration::from_secs(u64::from(n % 16)),
        Advance::Minutes(n) => now + Duration::from_secs(60 * u64::from(n % 8)),
    };
    to.max(now)
}

/// Drains events, remembering calls and invocations for later steps.
pub fn drain_events(node: &mut Node, calls: &mut Vec<CallId>, invs: &mut Vec<InvocationId>) {
    while let Some(e) = node.poll_event() {
        match e {
            Event::Invoke(inv) if invs.len() < 64 => invs.push(inv.id),
            Event::CallDone { call, .. } => calls.retain(|c| *c != call),
            _ => {}
        }
    }
}

/// Applies an application command.
pub fn local(
    node: &mut Node,
    now: Time,
    l: &Local,
    calls: &mut Vec<CallId>,
    invs: &mut Vec<InvocationId>,
) {
    match l {
        Local::Register {
            name,
            ver,
            res,
            idempotent,
        } => {
            let spec = FunctionSpec {
                name: name.get("f"),
                version: ver.get(),
                resources: resources(res),
                idempotent: *idempotent,
            };
            let _ = node.register(now, spec);
        }
        Local::Unregister(name, ver) => {
            let _ = node.unregister(now, &name.get("f"), &ver.get());
        }
        Local::Call {
            function,
            req,
            locs,
            big_args,
            timeout_ms,
            target,
        } => {
            let mut call = Call::new(function.get("f"));
            call.target_cluster = target.as_ref().map(Cluster::get);
            call.version_req = req.get();
            call.locs = resources(locs);
            if *big_args {
                call.args = Bytes::from(vec![7u8; node.config().limits.max_frame_size]);
            }
            call.timeout = timeout_ms.map(|t| Duration::from_millis(u64::from(t)));
            if let Ok(id) = node.call(now, call)
                && calls.len() < 64
            {
                calls.push(id);
            }
        }
        Local::Cancel(pick) => {
            let id = match calls.len() {
                0 => CallId {
                    origin: node.id(),
                    incarnation: 1,
                    seq: u64::from(*pick),
                },
                n => calls[usize::from(*pick) % n],
            };
            let _ = node.cancel(now, id);
        }
        Local::Complete { pick, ok, big } => {
            if invs.is_empty() {
                return;
            }
            let inv = invs.remove(usize::from(*pick) % invs.len());
            let len = if *big {
                node.config().limits.max_frame_size
            } else {
                3
            };
            let result = if *ok {
                Ok(Bytes::from(vec![1u8; len]))
            } else {
                Err("x".repeat(len))
            };
            let _ = node.complete_invocation(now, inv, result);
        }
        Local::CompleteUnknown(i) => {
            let _ = node.complete_invocation(now, InvocationId(*i), Ok(Bytes::new()));
        }
        Local::Drain => node.drain(now),
        Local::Bridge(c, seeds) => {
            let b = BridgeConfig {
                cluster: c.get().to_string(),
                seeds: seeds.iter().map(|w| w.addr()).collect(),
            };
            let _ = node.bridge(now, b);
        }
    }
}

// ----- two nodes over a faulty link -------------------------------------------

/// One input to a pair of nodes.
#[derive(Arbitrary, Debug, Clone)]
pub enum PairStep {
    /// Delivers the frame at this position of a direction's queue.
    Deliver(bool, u8),
    /// Delivers it and keeps a copy (a duplicate).
    Duplicate(bool, u8),
    /// Loses it.
    Drop(bool, u8),
    /// Delivers a direction's whole queue in order.
    Flush(bool),
    /// Breaks the connection: queued frames are lost, both sides are told.
    Break,
    /// The clock moves; due timers fire on both nodes.
    Advance(Advance),
    /// A command on one node.
    Local(bool, Local),
}

/// Two nodes and the link between them.
#[derive(Debug)]
pub struct Pair {
    /// Node 1 (`sim://1`), which joins through node 2.
    pub a: Node,
    /// Node 2 (`sim://2`).
    pub b: Node,
    /// The clock.
    pub now: Time,
    /// Frames in flight: `[a → b, b → a]`.
    pub link: [VecDeque<Bytes>; 2],
    checkers: [Checker; 2],
    calls: [Vec<CallId>; 2],
    invocations: [Vec<InvocationId>; 2],
}

/// The config of pair nodes: the small one with room for both and their
/// traffic.
pub fn pair_config(seed: u64) -> Config {
    let mut c = small_config(seed);
    c.limits.max_queued_transmits = 4096;
    c.limits.peer_frames_per_sec = 100_000;
    c.limits.peer_frame_burst = 100_000;
    c
}

impl Pair {
    /// Two fresh nodes; `a` joins through `b`.
    pub fn new(seed: u64) -> Pair {
        let now = Time::ZERO;
        let a = make_node(pair_config(seed), 1, now);
        let b = make_node(pair_config(seed.wrapping_add(1)), 2, now);
        let mut p = Pair {
            a,
            b,
            now,
            link: [VecDeque::new(), VecDeque::new()],
            checkers: [Checker::default(), Checker::default()],
            calls: [Vec::new(), Vec::new()],
            invocations: [Vec::new(), Vec::new()],
        };
        p.a.join(now, [addr(2)]);
        p.after();
        p
    }

    /// Runs the faulty phase decoded from `u`, then heals the link and
    /// checks that the two converge.
    pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
        let mut p = Pair::new(u.arbitrary()?);
        let trace = std::env::var_os("MPREG_FUZZ_TRACE").is_some();
        while !u.is_empty() {
            let step: PairStep = u.arbitrary()?;
            if trace {
                eprintln!("{:?} {step:?}", p.now);
            }
            p.step(&step);
        }
        p.converge();
        Ok(())
    }

    fn deliver(&mut self, to_b: bool, frame: &[u8]) {
        let now = self.now;
        let (node, from) = if to_b {
            (&mut self.b, addr(1))
        } else {
            (&mut self.a, addr(2))
        };
        let _ = node.handle_frame(now, &from, frame);
    }

    /// Applies one step, checks both nodes, moves their output to the link.
    pub fn step(&mut self, step: &PairStep) {
        let now = self.now;
        match step {
            PairStep::Deliver(dir, pick) | PairStep::Duplicate(dir, pick) => {
                let q = &mut self.link[usize::from(!*dir)];
                if !q.is_empty() {
                    let i = usize::from(*pick) % q.len();
                    let f = if matches!(step, PairStep::Duplicate(..)) {
                        q[i].clone()
                    } else {
                        q.remove(i).unwrap_or_default()
                    };
                    self.deliver(*dir, &f);
                }
            }
            PairStep::Drop(dir, pick) => {
                let q = &mut self.link[usize::from(!*dir)];
                if !q.is_empty() {
                    let i = usize::from(*pick) % q.len();
                    q.remove(i);
                }
            }
            PairStep::Flush(dir) => {
                let frames: Vec<Bytes> = self.link[usize::from(!*dir)].drain(..).collect();
                for f in frames {
                    self.deliver(*dir, &f);
                }
            }
            PairStep::Break => self.break_link(),
            PairStep::Advance(adv) => {
                let deadline = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                self.now = advance(now, *adv, deadline);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            PairStep::Local(on_a, l) => {
                let i = usize::from(!*on_a);
                let node = if *on_a { &mut self.a } else { &mut self.b };
                local(node, now, l, &mut self.calls[i], &mut self.invocations[i]);
            }
        }
        self.after();
    }

    fn break_link(&mut self) {
        self.link[0].clear();
        self.link[1].clear();
        self.a.handle_unreachable(self.now, &addr(2));
        self.b.handle_unreachable(self.now, &addr(1));
    }

    fn after(&mut self) {
        self.checkers[0].check(&self.a);
        self.checkers[1].check(&self.b);
        for (i, node) in [&mut self.a, &mut self.b].into_iter().enumerate() {
            let other = addr(2 - i as u8);
            while let Some(t) = node.poll_transmit() {
                // Frames to anyone else (a stale address) are lost.
                if t.to == other && self.link[i].len() < 10_000 {
                    self.link[i].push_back(t.frame);
                }
            }
            drain_events(node, &mut self.calls[i], &mut self.invocations[i]);
        }
    }

    /// Whether the two hold the same state and each holds the other Alive.
    pub fn converged(&self) -> bool {
        self.a.state_digest() == self.b.state_digest()
            && self.a.member_state(&self.b.id()) == Some(MemberState::Alive)
            && self.b.member_state(&self.a.id()) == Some(MemberState::Alive)
            && self.a.replicated_state() == self.b.replicated_state()
    }

    /// Heals the link: every frame is delivered in order, handlers answer,
    /// and the clock runs. Panics unless the two converge within a minute
    /// of simulated time.
    pub fn converge(&mut self) {
        // A clean link starts with fresh connections (a stream transport
        // reports the loss of frames as a broken connection).
        self.break_link();
        self.after();
        let start = self.now;
        let limit = start + Duration::from_secs(60);
        loop {
            let mut n = 0;
            while !(self.link[0].is_empty() && self.link[1].is_empty()) {
                self.step(&PairStep::Flush(true));
                self.step(&PairStep::Flush(false));
                n += 1;
                assert!(n < 10_000, "the two nodes talk forever");
            }
            for on_a in [true, false] {
                while !self.invocations[usize::from(!on_a)].is_empty() {
                    let done = Local::Complete {
                        pick: 0,
                        ok: true,
                        big: false,
                    };
                    self.step(&PairStep::Local(on_a, done));
                }
            }
            if self.converged() {
                return;
            }
            assert!(
                self.now < limit,
                "no convergence a minute after the link healed:\n\
                 a: {:?} {:?}\nb: {:?} {:?}",
                self.a.members().collect::<Vec<_>>(),
                self.a.state_digest(),
                self.b.members().collect::<Vec<_>>(),
                self.b.state_digest(),
            );
            self.step(&PairStep::Advance(Advance::ToDeadline));
            if self.link.iter().all(VecDeque::is_empty) {
                // Nothing was due yet: move on a little.
                self.step(&PairStep::Advance(Advance::Millis(10)));
            }
        }
    }
}

// ----- configurations -----------------------------------------------------------

/// Runs a short two-node scenario on any configuration that validates:
/// join, register, call, a few seconds of protocol time, leave. Nothing
/// may panic.
pub fn exercise(cfg: &Config) {
    let mut now = Time::ZERO;
    let mk = |i: u128, seed_off: u64| {
        let mut c = cfg.clone();
        c.rng_seed = c.rng_seed.wrapping_add(seed_off);
        Node::new(
            c,
            Identity {
                id: NodeId::from_u128(i),
                addr: Addr::new(format!("cfg://{i}")),
                incarnation: 1,
            },
            now,
        )
        .expect("a validated config makes a node")
    };
    let mut nodes = [mk(1 << 120, 0), mk(9 << 120, 1), mk(5 << 120, 2)];
    let addrs: Vec<Addr> = nodes.iter().map(|n| n.addr().clone()).collect();
    let spec = FunctionSpec::new("echo").resources(["r"]).idempotent(true);
    let _ = nodes[1].register(now, spec.clone());
    let _ = nodes[2].register(now, spec);
    nodes[0].join(now, [addrs[1].clone()]);
    nodes[2].join(now, [addrs[0].clone()]);
    for round in 0..60 {
        // Deliver everything, answer every handler.
        for _ in 0..8 {
            let mut wire = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                while let Some(t) = n.poll_transmit() {
                    wire.push((i, t));
                }
                while let Some(e) = n.poll_event() {
                    if let Event::Invoke(inv) = e {
                        let _ = n.complete_invocation(now, inv.id, Ok(inv.args));
                    }
                }
            }
            if wire.is_empty() {
                break;
            }
            for (i, t) in wire {
                if let Some(j) = addrs.iter().position(|a| *a == t.to) {
                    let _ = nodes[j].handle_frame(now, &addrs[i], &t.frame);
                }
            }
        }
        match round {
            10 => {
                let _ = nodes[0].call(now, Call::new("echo").locs(["r"]).args("x"));
            }
            20 => nodes[2].handle_unreachable(now, &addrs[1]),
            30 => nodes[1].drain(now),
            40 => nodes[1].leave(now),
            _ => {}
        }
        let next = nodes
            .iter()
            .filter_map(Node::poll_timeout)
            .min()
            .unwrap_or(now);
        now = next.max(now + Duration::from_millis(1));
        for n in &mut nodes {
            n.handle_timeout(now);
        }
    }
}

/// A configuration from fuzzed tweaks of the small one: each field is
/// kept or replaced by an arbitrary value.
pub fn tweaked_config(u: &mut Unstructured<'_>) -> Result<Config> {
    fn d(u: &mut Unstructured<'_>, v: &mut Duration) -> Result<()> {
        if u.ratio(1, 4)? {
            *v = match u.int_in_range(0..=3)? {
                0 => Duration::from_micros(u.int_in_range(0..=2_000_000)?),
                1 => Duration::from_secs(u.arbitrary()?),
                2 => Duration::MAX,
                _ => Duration::ZERO,
            };
        }
        Ok(())
    }
    fn n<'a, T: Arbitrary<'a> + TryFrom<u8>>(u: &mut Unstructured<'a>, v: &mut T) -> Result<()> {
        if u.ratio(1, 4)? {
            *v = if u.arbitrary()? {
                u.arbitrary()?
            } else {
                T::try_from(u.int_in_range(0..=8u8)?)
                    .map_err(|_| arbitrary::Error::IncorrectFormat)?
            };
        }
        Ok(())
    }
    let mut c = small_config(u.arbitrary()?);
    let m = &mut c.membership;
    for v in [
        &mut m.probe_period,
        &mut m.probe_timeout_min,
        &mut m.probe_timeout_max,
        &mut m.indirect_timeout,
        &mut m.suspicion_per_decade,
        &mut m.dissemination_allowance,
        &mut m.reconnect_window,
        &mut m.join_retry_interval,
        &mut m.seed_redial_interval,
    ] {
        d(u, v)?;
    }
    n(u, &mut m.indirect_probes)?;
    n(u, &mut m.suspicion_confirmations)?;
    n(u, &mut m.suspicion_speedup)?;
    n(u, &mut m.max_local_health)?;
    let o = &mut c.overlay;
    for v in [
        &mut o.active_view_extra,
        &mut o.active_view_min,
        &mut o.active_view_max,
        &mut o.active_view_slack,
        &mut o.passive_view_size,
        &mut o.shuffle_size,
    ] {
        n(u, v)?;
    }
    n(u, &mut o.join_walk_ttl)?;
    n(u, &mut o.passive_walk_ttl)?;
    d(u, &mut o.shuffle_period)?;
    let s = &mut c.dissemination;
    for v in [
        &mut s.graft_timeout,
        &mut s.graft_timeout_min,
        &mut s.ihave_delay,
        &mut s.sync_interval,
    ] {
        d(u, v)?;
    }
    n(u, &mut s.sync_page_bytes)?;
    n(u, &mut s.sync_pages_per_exchange)?;
    d(u, &mut c.calls.default_timeout)?;
    d(u, &mut c.calls.max_timeout)?;
    n(u, &mut c.calls.hop_budget)?;
    let l = &mut c.limits;
    for v in [
        &mut l.max_frame_size,
        &mut l.max_members,
        &mut l.max_functions_per_node,
        &mut l.max_catalog_entries,
        &mut l.max_pending_calls,
        &mut l.max_invocations,
        &mut l.max_dedup_entries,
        &mut l.max_sessions,
        &mut l.max_missing_updates,
        &mut l.max_queued_transmits,
    ] {
        n(u, v)?;
    }
    n(u, &mut l.peer_frames_per_sec)?;
    n(u, &mut l.peer_frame_burst)?;
    if u.ratio(1, 8)? {
        c.cluster_id = u.arbitrary()?;
    }
    if u.ratio(1, 8)? {
        c.name = u.arbitrary()?;
    }
    let fed: Fed = u.arbitrary()?;
    fed.apply(&mut c);
    Ok(c)
}

/// Validates a configuration; one that validates must make working nodes.
pub fn check_config(cfg: &Config) {
    if cfg.validate().is_ok() {
        exercise(cfg);
    }
}
