//! Every configured cap, one test each: input that would grow past it is
//! refused or shed, the hit is counted in `metrics().limits_hit`, reported
//! once as `Event::LimitHit`, and nothing panics. Plus two guards at the edges: the executor id of a call, and a leave
//! from a node with an empty active view.

use bytes::Bytes;
use mpreg_proto::testing::{Dial, Lone};
use mpreg_proto::wire::{
    self, CatalogDelta, CatalogEntry, Hello, MemberRecord, Message, Role, Update, UpdateId,
};
use mpreg_proto::{
    Addr, Call, CallError, Config, Event, FnBody, FrameError, FunctionSpec, Identity, Limit,
    MemberState, NodeId, RegisterError, Time,
};

const CLUSTER: &str = "limits";

fn config() -> Config {
    Config {
        cluster_id: CLUSTER.into(),
        ..Config::default()
    }
}

fn id(i: u128) -> NodeId {
    NodeId::from_u128(i << 64 | i)
}

fn at(i: u128) -> Addr {
    Addr::new(format!("sim://{i}"))
}

/// The node under test (index 1), its peers scripted by the test.
struct Harness {
    l: Lone,
}

impl std::ops::Deref for Harness {
    type Target = Lone;
    fn deref(&self) -> &Lone {
        &self.l
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Lone {
        &mut self.l
    }
}

impl Harness {
    fn new(cfg: Config) -> Harness {
        let identity = Identity {
            id: id(1),
            key: mpreg_proto::testing::key(1),
            addr: at(1),
            incarnation: 1,
        };
        Harness {
            l: Lone::with_identity(cfg, identity),
        }
    }

    fn frame_at(&mut self, now: Time, from: u128, msg: &Message) -> Result<(), FrameError> {
        let f = wire::encode(msg, wire::PROTOCOL_VERSION, wire::cluster_tag(CLUSTER));
        self.l.now = now;
        let r = self.l.frame(&at(from), &f);
        let max = self.node.config().limits.max_frame_size;
        assert!(self.sent.iter().all(|(_, f)| f.len() <= max));
        r
    }

    fn frame(&mut self, from: u128, msg: &Message) -> Result<(), FrameError> {
        self.frame_at(Time::ZERO, from, msg)
    }

    fn hello(&mut self, from: u128) {
        let h = Message::Hello(Hello {
            node: id(from),
            incarnation: 1,
            addr: at(from),
            min_version: wire::MIN_PROTOCOL_VERSION,
            max_version: wire::PROTOCOL_VERSION,
            cluster_id: CLUSTER.into(),
            role: Role::Member,
        });
        self.frame(from, &h).unwrap();
    }

    /// Member `i` joins through the node (an active peer from then on).
    fn join(&mut self, i: u128) {
        self.hello(i);
        self.frame(i, &Message::Join(record(i, ""))).unwrap();
    }

    fn learn(&mut self, records: Vec<MemberRecord>) {
        let u = records.into_iter().map(Update::Member).collect();
        self.frame(99, &Message::Gossip(u)).unwrap();
    }

    fn catalog(&mut self, owner: u128, names: &[&str]) {
        let delta = CatalogDelta {
            owner: id(owner),
            epoch: 1,
            floor: 0,
            complete: false,
            entries: names
                .iter()
                .enumerate()
                .map(|(k, n)| CatalogEntry {
                    name: (*n).into(),
                    version: semver::Version::new(1, 0, 0),
                    counter: k as u64 + 1,
                    scope: Default::default(),
                    body: Some(FnBody {
                        resources: Default::default(),
                        idempotent: false,
                        route: None,
                    }),
                })
                .collect(),
        };
        self.frame(99, &Message::Gossip(vec![Update::Catalog(delta)]))
            .unwrap();
    }

    /// The limit was hit `n` times and reported exactly once.
    fn assert_hit(&self, limit: Limit) {
        assert!(
            self.node.metrics().limit_hits(limit) >= 1,
            "{limit:?} not counted"
        );
        let reported = self
            .events
            .iter()
            .filter(|e| **e == Event::LimitHit(limit))
            .count();
        assert_eq!(reported, 1, "{limit:?} reported {reported} times");
    }

    fn sent_to(&self, i: u128, kind: wire::MessageKind) -> Vec<Message> {
        self.l.sent_to(&at(i), kind)
    }
}

fn record(i: u128, name: &str) -> MemberRecord {
    MemberRecord {
        id: id(i),
        addr: at(i),
        incarnation: 1,
        state: MemberState::Alive,
        accusers: vec![],
        name: name.into(),
    }
}

fn call_request(seq: u64, function: &str) -> Message {
    Message::Call(wire::CallRequest {
        id: mpreg_proto::CallId {
            origin: id(2),
            incarnation: 1,
            seq,
        },
        function: function.into(),
        version_req: None,
        locs: Default::default(),
        args: Bytes::from_static(b"x"),
        budget_us: 1_000_000,
        hop_budget: 3,
        target_cluster: None,
        path: vec![],
        executor: None,
    })
}

#[test]
fn frame_size_in_and_out() {
    let mut c = config();
    c.limits.max_frame_size = 4096;
    c.dissemination.sync_page_bytes = 2048;
    let mut h = Harness::new(c);
    let mut big = wire::encode(
        &Message::Ping(1),
        wire::PROTOCOL_VERSION,
        wire::cluster_tag(CLUSTER),
    );
    big.resize(5000, 0);
    for _ in 0..2 {
        let r = h.l.frame(&at(2), &big);
        assert!(matches!(
            r,
            Err(FrameError::Decode(wire::DecodeError::TooLarge { .. }))
        ));
    }
    assert_eq!(h.node.metrics().limit_hits(Limit::FrameSize), 2);
    // Outgoing: a call too large for a frame fails instead of being sent.
    h.learn(vec![record(2, "")]);
    h.catalog(2, &["f"]);
    let call = h
        .node
        .call(Time::ZERO, Call::new("f").args(vec![0u8; 5000]))
        .unwrap();
    h.drain();
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::CallDone { call: c, result: Err(CallError::Rejected(_)) } if *c == call
    )));
    assert!(h.sent_to(2, wire::MessageKind::Call).is_empty());
    h.assert_hit(Limit::FrameSize);
}

#[test]
fn members() {
    let mut c = config();
    c.limits.max_members = 3;
    let mut h = Harness::new(c);
    h.learn((2..=6).map(|i| record(i, "")).collect());
    assert_eq!(h.node.members().count(), 3);
    // Known members still change.
    let mut r = record(2, "");
    r.incarnation = 2;
    h.learn(vec![r]);
    assert!(
        h.node
            .members()
            .any(|m| m.id == id(2) && m.incarnation == 2)
    );
    h.assert_hit(Limit::Members);
}

#[test]
fn functions_per_node() {
    let mut c = config();
    c.limits.max_functions_per_node = 2;
    let mut h = Harness::new(c);
    for f in ["a", "b"] {
        h.node.register(Time::ZERO, FunctionSpec::new(f)).unwrap();
    }
    assert_eq!(
        h.node.register(Time::ZERO, FunctionSpec::new("c")),
        Err(RegisterError::Limit(2))
    );
    h.learn(vec![record(2, "")]);
    h.catalog(2, &["a", "b", "c", "d"]);
    assert_eq!(h.node.catalog().entries_of(&id(2)).count(), 2);
    h.drain();
    h.assert_hit(Limit::FunctionsPerNode);
}

#[test]
fn catalog_entries_in_total() {
    let mut c = config();
    c.limits.max_catalog_entries = 3;
    let mut h = Harness::new(c);
    h.learn(vec![record(2, ""), record(3, "")]);
    h.catalog(2, &["a", "b"]);
    h.catalog(3, &["a", "b"]);
    assert_eq!(h.node.catalog().total_entries(), 3);
    h.assert_hit(Limit::CatalogEntries);
}

#[test]
fn pending_calls() {
    let mut c = config();
    c.limits.max_pending_calls = 2;
    let mut h = Harness::new(c);
    h.learn(vec![record(2, "")]);
    h.catalog(2, &["f"]);
    for _ in 0..2 {
        h.node.call(Time::ZERO, Call::new("f")).unwrap();
    }
    let third = h.node.call(Time::ZERO, Call::new("f"));
    assert!(matches!(third, Err(CallError::Rejected(_))), "{third:?}");
    assert_eq!(h.node.pending_calls(), 2);
    h.drain();
    h.assert_hit(Limit::PendingCalls);
}

#[test]
fn invocations() {
    let mut c = config();
    c.limits.max_invocations = 1;
    let mut h = Harness::new(c);
    h.node.register(Time::ZERO, FunctionSpec::new("f")).unwrap();
    h.hello(2);
    h.frame(2, &call_request(1, "f")).unwrap();
    h.frame(2, &call_request(2, "f")).unwrap();
    assert_eq!(h.node.running_invocations(), 1);
    let overloaded = h
        .sent_to(2, wire::MessageKind::Response)
        .into_iter()
        .filter(|m| matches!(m, Message::Response(r) if r.result == Err(CallError::Overloaded)))
        .count();
    assert_eq!(overloaded, 1);
    h.assert_hit(Limit::Invocations);
}

impl Harness {
    /// Completes every invocation started so far with `reply`.
    fn complete_all(&mut self, reply: &[u8]) {
        let started: Vec<_> = self.invocations.drain(..).map(|i| i.id).collect();
        for inv in started {
            let r =
                self.node
                    .complete_invocation(Time::ZERO, inv, Ok(Bytes::copy_from_slice(reply)));
            r.unwrap();
        }
        self.drain();
    }
}

#[test]
fn dedup_entries() {
    let mut c = config();
    c.limits.max_dedup_entries = 1;
    let mut h = Harness::new(c);
    h.node.register(Time::ZERO, FunctionSpec::new("f")).unwrap();
    h.hello(2);
    h.frame(2, &call_request(1, "f")).unwrap();
    h.complete_all(b"");
    // The table is full with a finished call: it is forgotten early and the
    // second call runs.
    h.frame(2, &call_request(2, "f")).unwrap();
    assert_eq!(h.node.running_invocations(), 1);
    // Full with a running call: the third is refused, not run.
    h.frame(2, &call_request(3, "f")).unwrap();
    assert_eq!(h.node.running_invocations(), 1);
    h.assert_hit(Limit::DedupEntries);
    h.complete_all(b"");
    h.frame(2, &call_request(3, "f")).unwrap();
    assert_eq!(h.node.running_invocations(), 1);
}

#[test]
fn dedup_bytes() {
    let mut c = config();
    c.limits.max_dedup_bytes = 1500;
    let mut h = Harness::new(c);
    h.node.register(Time::ZERO, FunctionSpec::new("f")).unwrap();
    h.hello(2);
    for seq in [1, 2] {
        h.frame(2, &call_request(seq, "f")).unwrap();
        h.complete_all(&[7; 1000]);
    }
    h.assert_hit(Limit::DedupBytes);
    // The newest outcome is still remembered: a duplicate is answered
    // without running; the oldest was forgotten.
    h.frame(2, &call_request(2, "f")).unwrap();
    assert_eq!(h.node.running_invocations(), 0);
    assert_eq!(h.node.metrics().invocations_deduplicated, 1);
    h.frame(2, &call_request(1, "f")).unwrap();
    assert_eq!(h.node.running_invocations(), 1);
}

#[test]
fn connections() {
    let mut c = config();
    c.connections.max_connections = 2;
    let mut h = Harness::new(c);
    // One connection (member 99's) is open; one more is accepted.
    h.learn(vec![record(7, "")]);
    h.catalog(7, &["g"]);
    for i in 2..=6 {
        h.accept(&at(i));
        assert!(h.node.connection_count() <= 2);
    }
    assert_eq!(h.node.metrics().connections_refused, 4);
    // A dial beyond the cap first closes the quietest unkept connection.
    h.closed.clear();
    h.l.node.call(Time::ZERO, Call::new("g")).unwrap();
    h.drain();
    assert_eq!(h.dials, vec![at(7)]);
    assert_eq!(h.closed.len(), 1, "one connection closed to make room");
    h.assert_hit(Limit::Connections);
}

#[test]
fn held_bytes() {
    let mut c = config();
    c.connections.max_held_bytes = c.limits.max_frame_size;
    let mut h = Harness::new(c);
    h.learn(vec![record(2, "")]);
    h.catalog(2, &["f"]);
    // The dial hangs: frames pile up for member 2 until the cap.
    h.dial = Dial::Hang;
    let blob = vec![0u8; 6 << 20];
    for _ in 0..3 {
        h.l.node
            .call(Time::ZERO, Call::new("f").args(blob.clone()))
            .unwrap();
    }
    h.drain();
    assert_eq!(h.dials, vec![at(2)], "one dial for everything held");
    h.assert_hit(Limit::HeldBytes);
    // Given up, the calls are sent again: they wait behind a new dial.
    assert!(h.node.dialing_count() <= 1);
}

#[test]
fn missing_updates() {
    let mut c = config();
    c.limits.max_missing_updates = 2;
    let mut h = Harness::new(c);
    h.join(2);
    let ids = (10..15)
        .map(|i| UpdateId::Member {
            id: id(i),
            incarnation: 1,
            state: MemberState::Alive,
        })
        .collect();
    h.frame(2, &Message::IHave(ids)).unwrap();
    h.assert_hit(Limit::MissingUpdates);
    // Only the ones remembered are grafted.
    h.node.handle_timeout(Time::from_secs(1));
    h.drain();
    let grafted: usize = h
        .sent_to(2, wire::MessageKind::Graft)
        .iter()
        .map(|m| match m {
            Message::Graft(ids) => ids.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(grafted, 2);
}

#[test]
fn queued_transmits() {
    let mut c = config();
    c.limits.max_queued_transmits = 2;
    let mut h = Harness::new(c);
    let f = wire::encode(
        &Message::Ping(1),
        wire::PROTOCOL_VERSION,
        wire::cluster_tag(CLUSTER),
    );
    let conn = h.conn(&at(2));
    h.sent.clear();
    for _ in 0..5 {
        // Not drained: the runtime is slow to send.
        let _ = h.l.node.handle_frame(Time::ZERO, conn, &f);
        assert!(h.node.queued_transmits() <= 2);
    }
    h.drain();
    assert_eq!(h.sent.len(), 2);
    h.assert_hit(Limit::QueuedTransmits);
}

#[test]
fn peer_input_rate() {
    let mut c = config();
    c.limits.peer_frames_per_sec = 1;
    c.limits.peer_frame_burst = 2;
    let mut h = Harness::new(c);
    let ping = Message::Ping(1);
    let mut accepted = 0;
    while h.frame(2, &ping).is_ok() {
        accepted += 1;
        assert!(accepted < 10);
    }
    // The connection opens with a full bucket of two.
    assert_eq!(accepted, 2);
    assert_eq!(h.frame(2, &ping), Err(FrameError::RateLimited));
    // Another address has its own bucket; a second later there is a token.
    assert!(h.frame(3, &ping).is_ok());
    assert!(h.frame_at(Time::from_secs(1), 2, &ping).is_ok());
    assert!(h.node.metrics().limit_hits(Limit::PeerRate) >= 2);
    h.assert_hit(Limit::PeerRate);
    // A call beyond the rate is not lost silently: it is answered
    // `Overloaded` and never runs.
    h.node.register(Time::ZERO, FunctionSpec::new("f")).unwrap();
    assert_eq!(
        h.frame_at(Time::from_secs(1), 2, &call_request(1, "f")),
        Err(FrameError::RateLimited)
    );
    assert_eq!(h.node.running_invocations(), 0);
    let refused = h.sent_to(2, wire::MessageKind::Response);
    assert!(
        matches!(&refused[..], [Message::Response(r)] if r.result == Err(CallError::Overloaded)),
        "{refused:?}"
    );
}

#[test]
fn pending_announcements() {
    let mut c = config();
    c.limits.max_pending_announcements = 2;
    let mut h = Harness::new(c);
    h.join(2);
    // Member 2 prunes us: it gets announcements only.
    h.frame(2, &Message::Prune).unwrap();
    h.sent.clear();
    // News arrives from elsewhere, one update per frame, all at once.
    for i in 10..15 {
        h.learn(vec![record(i, "")]);
    }
    let ihaves: Vec<usize> = h
        .sent_to(2, wire::MessageKind::IHave)
        .iter()
        .map(|m| match m {
            Message::IHave(ids) => ids.len(),
            _ => 0,
        })
        .collect();
    // The first goes at once; the rest are batched, and a full batch
    // leaves without waiting.
    assert_eq!(ihaves, vec![1, 2, 2]);
    h.assert_hit(Limit::Announcements);
}

#[test]
fn anti_entropy_pages() {
    let mut c = config();
    c.dissemination.sync_page_bytes = 1024;
    c.dissemination.sync_pages_per_exchange = 1;
    let mut h = Harness::new(c);
    let name = "a-rather-long-member-name-to-fill-pages";
    h.learn((10..50).map(|i| record(i, name)).collect());
    h.hello(2);
    h.sent.clear();
    let ids = (10..50).map(id).collect();
    h.frame(2, &Message::SyncPull(ids)).unwrap();
    let pages = h.sent_to(2, wire::MessageKind::SyncUpdates);
    assert_eq!(pages.len(), 1);
    let page_bytes: Vec<usize> = h.sent.iter().map(|(_, f)| f.len()).collect();
    assert!(page_bytes.iter().all(|b| *b <= 1024 + 64), "{page_bytes:?}");
    h.assert_hit(Limit::SyncPages);
}

#[test]
fn every_limit_is_tested_here() {
    let src = include_str!("limits.rs");
    for l in Limit::ALL {
        let name = format!("Limit::{l:?})");
        assert!(src.contains(&name), "no test hits {l:?}");
    }
}

/// Not a cap but the same kind of guard: a call addressed to another member
/// id (the process at this address restarted) is answered `NotHere`, and the
/// handler does not run.
#[test]
fn a_call_for_another_member_id_does_not_run() {
    let mut h = Harness::new(config());
    h.node.register(Time::ZERO, FunctionSpec::new("f")).unwrap();
    h.hello(2);
    let Message::Call(mut req) = call_request(1, "f") else {
        unreachable!()
    };
    req.executor = Some(id(7));
    h.frame(2, &Message::Call(req.clone())).unwrap();
    assert_eq!(h.node.running_invocations(), 0);
    let answers = h.sent_to(2, wire::MessageKind::Response);
    assert!(
        matches!(&answers[..], [Message::Response(r)] if r.result == Err(CallError::NotHere)),
        "{answers:?}"
    );
    req.executor = Some(id(1));
    h.frame(2, &Message::Call(req)).unwrap();
    assert_eq!(h.node.running_invocations(), 1);
}

/// Not a cap either: a node whose active view is empty (just joined, or
/// mid-repair) still tells some members directly of its news and its leave.
#[test]
fn a_leave_with_an_empty_active_view_still_reaches_members() {
    let mut h = Harness::new(config());
    h.learn((2..8).map(|i| record(i, "")).collect());
    assert!(h.node.active_view().is_empty());
    // So does a registration: no tree yet, the delta goes to a few members.
    h.node.register(Time::ZERO, FunctionSpec::new("f")).unwrap();
    h.drain();
    let told = (2..8)
        .filter(|i| !h.sent_to(*i, wire::MessageKind::Gossip).is_empty())
        .count();
    assert!(told >= 3, "registration told {told} members");
    h.sent.clear();
    h.node.leave(Time::ZERO);
    h.drain();
    let told = (2..8)
        .filter(|i| !h.sent_to(*i, wire::MessageKind::Gossip).is_empty())
        .count();
    assert!(told >= 3, "told {told} members");
}
