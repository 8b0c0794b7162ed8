//! Every message survives encode → decode unchanged, and no byte string
//! makes decoding panic.

use bytes::Bytes;
use mpreg_proto::auth::{Identify, Proof, PublicKey, Refusal, Signature};
use mpreg_proto::multistep::{ManyError, RequestError};
use mpreg_proto::wire::*;
use mpreg_proto::{Addr, CallError, CallId, FnBody, MemberState, NodeId, Route};
use proptest::prelude::*;
use proptest::strategy::Union;
use semver::{Version, VersionReq};
use std::collections::BTreeSet;

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u128>().prop_map(NodeId::from_u128)
}
fn addr() -> impl Strategy<Value = Addr> {
    "[a-z]{2,5}://[a-z0-9.]{0,30}(:[0-9]{1,5})?".prop_map(Addr::new)
}
fn text() -> impl Strategy<Value = compact_str::CompactString> {
    ".{0,40}".prop_map(compact_str::CompactString::from)
}
fn version() -> impl Strategy<Value = Version> {
    (0u64..5, 0u64..20, 0u64..100).prop_map(|(a, b, c)| Version::new(a, b, c))
}
fn version_req() -> impl Strategy<Value = Option<VersionReq>> {
    prop_oneof![
        Just(None),
        Just(Some(VersionReq::parse("^1.2").unwrap())),
        Just(Some(VersionReq::parse(">=0.3, <2").unwrap()))
    ]
}
fn resources() -> impl Strategy<Value = BTreeSet<compact_str::CompactString>> {
    proptest::collection::btree_set(
        "[a-z-]{1,12}".prop_map(compact_str::CompactString::from),
        0..5,
    )
}
fn state() -> impl Strategy<Value = MemberState> {
    prop_oneof![
        Just(MemberState::Alive),
        Just(MemberState::Suspect),
        Just(MemberState::Dead),
        Just(MemberState::Left)
    ]
}
fn record() -> impl Strategy<Value = MemberRecord> {
    (
        node_id(),
        addr(),
        any::<u64>(),
        state(),
        proptest::collection::vec(node_id(), 0..4),
        text(),
    )
        .prop_map(
            |(id, addr, incarnation, state, accusers, name)| MemberRecord {
                id,
                addr,
                incarnation,
                state,
                accusers,
                name,
            },
        )
}
fn route() -> impl Strategy<Value = Option<Route>> {
    proptest::option::of(
        (
            text(),
            proptest::collection::vec(text(), 0..4),
            proptest::collection::vec(resources(), 0..3),
        )
            .prop_map(|(cluster, path, sets)| Route {
                cluster,
                path,
                sets,
            }),
    )
}
fn body() -> impl Strategy<Value = FnBody> {
    (resources(), any::<bool>(), route()).prop_map(|(resources, idempotent, route)| FnBody {
        resources,
        idempotent,
        route,
    })
}
fn delta() -> impl Strategy<Value = CatalogDelta> {
    let entry = (
        text(),
        version(),
        any::<u64>(),
        proptest::option::of(body()),
    )
        .prop_map(|(name, version, counter, body)| CatalogEntry {
            name,
            version,
            scope: body
                .as_ref()
                .map_or_else(Default::default, |b| b.scope().into()),
            counter,
            body,
        });
    (
        node_id(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(entry, 0..4),
    )
        .prop_map(|(owner, epoch, floor, complete, entries)| CatalogDelta {
            owner,
            epoch,
            floor,
            complete,
            entries,
        })
}
fn update() -> impl Strategy<Value = Update> {
    prop_oneof![
        record().prop_map(Update::Member),
        delta().prop_map(Update::Catalog)
    ]
}
fn update_id() -> impl Strategy<Value = UpdateId> {
    prop_oneof![
        (node_id(), any::<u64>(), state()).prop_map(|(id, incarnation, state)| UpdateId::Member {
            id,
            incarnation,
            state
        }),
        (node_id(), any::<u64>(), any::<u64>()).prop_map(|(owner, epoch, counter)| {
            UpdateId::Catalog {
                owner,
                epoch,
                counter,
            }
        }),
    ]
}
fn call_id() -> impl Strategy<Value = CallId> {
    (node_id(), any::<u64>(), any::<u64>()).prop_map(|(origin, incarnation, seq)| CallId {
        origin,
        incarnation,
        seq,
    })
}
fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..256).prop_map(Bytes::from)
}
fn call_error() -> impl Strategy<Value = CallError> {
    prop_oneof![
        text().prop_map(CallError::NotFound),
        (text(), proptest::collection::vec(text(), 0..3))
            .prop_map(|(function, locs)| CallError::NoProvider { function, locs }),
        Just(CallError::Timeout),
        Just(CallError::Unreachable),
        Just(CallError::Overloaded),
        Just(CallError::OutcomeUnknown),
        Just(CallError::HopBudgetExhausted),
        ".{0,30}".prop_map(CallError::HandlerFailed),
        ".{0,30}".prop_map(CallError::Rejected),
        Just(CallError::Cancelled),
        Just(CallError::NotHere),
    ]
}
fn outcome() -> impl Strategy<Value = Result<Bytes, CallError>> {
    prop_oneof![payload().prop_map(Ok), call_error().prop_map(Err)]
}
fn many_outcome() -> impl Strategy<Value = Result<Bytes, ManyError>> {
    let text = || "[a-z.]{0,8}";
    prop_oneof![
        payload().prop_map(Ok),
        call_error().prop_map(|e| Err(ManyError::Request(e))),
        (text(), call_error())
            .prop_map(|(command, error)| Err(ManyError::Failed { command, error })),
        proptest::collection::vec(text(), 0..4)
            .prop_map(|c| Err(ManyError::Invalid(RequestError::Cycle(c)))),
        (text(), text()).prop_map(|(command, reference)| Err(ManyError::Invalid(
            RequestError::Field { command, reference }
        ))),
        Just(Err(ManyError::Invalid(RequestError::Empty))),
    ]
}
fn peer() -> impl Strategy<Value = PeerInfo> {
    (node_id(), addr()).prop_map(|(id, addr)| PeerInfo { id, addr })
}
fn range() -> impl Strategy<Value = RangeDigest> {
    (any::<u16>(), any::<u64>(), any::<u32>()).prop_map(|(index, h, count)| RangeDigest {
        index,
        hash: H64(h),
        count,
    })
}

fn message() -> impl Strategy<Value = Message> {
    let role = prop_oneof![Just(Role::Member), Just(Role::Client)];
    Union::new(vec![
        (
            node_id(),
            any::<u64>(),
            addr(),
            any::<u8>(),
            any::<u8>(),
            text(),
            role,
        )
            .prop_map(
                |(node, incarnation, addr, min_version, max_version, cluster_id, role)| {
                    Message::Hello(Hello {
                        node,
                        incarnation,
                        addr,
                        min_version,
                        max_version,
                        cluster_id,
                        role,
                    })
                },
            )
            .boxed(),
        any::<u32>().prop_map(Message::Ping).boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(seq, load)| Message::Ack(Ack { seq, load }))
            .boxed(),
        (any::<u32>(), node_id(), addr())
            .prop_map(|(seq, target, addr)| Message::PingReq(PingReq { seq, target, addr }))
            .boxed(),
        any::<u32>().prop_map(Message::IndirectAck).boxed(),
        any::<u32>().prop_map(Message::Nack).boxed(),
        record().prop_map(Message::Join).boxed(),
        (record(), any::<u8>())
            .prop_map(|(joiner, ttl)| Message::ForwardJoin(ForwardJoin { joiner, ttl }))
            .boxed(),
        (record(), any::<bool>())
            .prop_map(|(sender, high_priority)| {
                Message::Neighbor(Neighbor {
                    sender,
                    high_priority,
                })
            })
            .boxed(),
        any::<bool>().prop_map(Message::NeighborReply).boxed(),
        Just(Message::Disconnect).boxed(),
        (peer(), any::<u8>(), proptest::collection::vec(peer(), 0..5))
            .prop_map(|(origin, ttl, sample)| {
                Message::Shuffle(Shuffle {
                    origin,
                    ttl,
                    sample,
                })
            })
            .boxed(),
        proptest::collection::vec(peer(), 0..5)
            .prop_map(Message::ShuffleReply)
            .boxed(),
        proptest::collection::vec(update(), 0..4)
            .prop_map(Message::Gossip)
            .boxed(),
        proptest::collection::vec(update_id(), 0..6)
            .prop_map(Message::IHave)
            .boxed(),
        proptest::collection::vec(update_id(), 0..6)
            .prop_map(Message::Graft)
            .boxed(),
        Just(Message::Prune).boxed(),
        (any::<u8>(), proptest::collection::vec(range(), 0..17))
            .prop_map(|(level, ranges)| Message::SyncRanges(SyncRanges { level, ranges }))
            .boxed(),
        (
            any::<u8>(),
            proptest::collection::vec(any::<u16>(), 0..5),
            proptest::collection::vec((node_id(), any::<u64>().prop_map(H64)), 0..6),
        )
            .prop_map(|(level, ranges, members)| {
                Message::SyncSummaries(SyncSummaries {
                    level,
                    ranges,
                    members,
                })
            })
            .boxed(),
        proptest::collection::vec(node_id(), 0..6)
            .prop_map(Message::SyncPull)
            .boxed(),
        proptest::collection::vec(update(), 0..4)
            .prop_map(Message::SyncUpdates)
            .boxed(),
        (
            call_id(),
            text(),
            version_req(),
            resources(),
            payload(),
            any::<u64>(),
            any::<u8>(),
            proptest::option::of(text()),
            proptest::collection::vec(text(), 0..3),
            any::<bool>(),
            proptest::option::of(node_id()),
        )
            .prop_map(
                |(
                    id,
                    function,
                    version_req,
                    locs,
                    args,
                    budget_us,
                    hop_budget,
                    target_cluster,
                    path,
                    fed,
                    executor,
                )| {
                    let req = CallRequest {
                        id,
                        function,
                        version_req,
                        locs,
                        args,
                        budget_us,
                        hop_budget,
                        target_cluster,
                        path,
                        executor,
                    };
                    if fed {
                        Message::FedCall(req)
                    } else {
                        Message::Call(req)
                    }
                },
            )
            .boxed(),
        (call_id(), outcome(), any::<u32>())
            .prop_map(|(id, result, load)| Message::FedResponse(CallResponse { id, result, load }))
            .boxed(),
        (node_id(), addr(), text())
            .prop_map(|(node, addr, cluster_id)| {
                Message::BridgeHello(BridgeHello {
                    node,
                    addr,
                    cluster_id,
                })
            })
            .boxed(),
        text().prop_map(Message::BridgeReject).boxed(),
        (
            any::<u64>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(text(), 1..4),
                    proptest::collection::vec(
                        (
                            text(),
                            version(),
                            proptest::collection::vec(resources(), 0..3),
                            any::<bool>(),
                        )
                            .prop_map(
                                |(name, version, sets, idempotent)| FnAd {
                                    name,
                                    version,
                                    sets,
                                    idempotent,
                                },
                            ),
                        0..3,
                    ),
                )
                    .prop_map(|(path, functions)| RouteAd { path, functions }),
                0..3,
            ),
        )
            .prop_map(|(version, routes)| Message::Summary(ClusterSummary { version, routes }))
            .boxed(),
        (call_id(), outcome(), any::<u32>())
            .prop_map(|(id, result, load)| Message::Response(CallResponse { id, result, load }))
            .boxed(),
        call_id().prop_map(Message::Cancel).boxed(),
        (
            any::<u64>(),
            text(),
            version_req(),
            resources(),
            payload(),
            any::<u64>(),
            proptest::option::of(text()),
        )
            .prop_map(
                |(token, function, version_req, locs, args, budget_us, target_cluster)| {
                    Message::ClientCall(ClientCall {
                        token,
                        function,
                        version_req,
                        locs,
                        args,
                        budget_us,
                        target_cluster,
                    })
                },
            )
            .boxed(),
        (any::<u64>(), outcome())
            .prop_map(|(token, result)| Message::ClientReply(ClientReply { token, result }))
            .boxed(),
        (any::<u64>(), payload(), any::<bool>(), any::<u64>())
            .prop_map(|(token, commands, explicit, budget_us)| {
                Message::ClientMany(ClientMany {
                    token,
                    commands,
                    explicit,
                    budget_us,
                })
            })
            .boxed(),
        (any::<u64>(), many_outcome())
            .prop_map(|(token, result)| Message::ClientManyReply(ClientManyReply { token, result }))
            .boxed(),
        (
            any::<u64>(),
            prop_oneof![Just(Query::Members), Just(Query::Catalog)],
        )
            .prop_map(Message::ClientQuery)
            .boxed(),
        (any::<u64>(), proptest::collection::vec(record(), 0..3))
            .prop_map(|(t, rs)| Message::ClientAnswer((t, QueryAnswer::Members(rs))))
            .boxed(),
        (
            any::<u64>(),
            proptest::collection::vec((node_id(), text(), version(), body()), 0..3),
        )
            .prop_map(|(t, es)| Message::ClientAnswer((t, QueryAnswer::Catalog(es))))
            .boxed(),
        (any::<[u8; 32]>(), any::<[u8; 16]>())
            .prop_map(|(key, nonce)| {
                Message::Identify(Identify {
                    key: PublicKey(key),
                    nonce,
                })
            })
            .boxed(),
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            proptest::option::of((any::<u32>(), any::<[u8; 32]>())),
        )
            .prop_map(|(a, b, secret)| {
                let mut sig = [0; 64];
                sig[..32].copy_from_slice(&a);
                sig[32..].copy_from_slice(&b);
                Message::Prove(Proof {
                    signature: Signature(sig),
                    secret,
                })
            })
            .boxed(),
        prop_oneof![
            Just(Refusal::BadSignature),
            Just(Refusal::KeyMismatch),
            Just(Refusal::WrongSecret),
            Just(Refusal::NotAllowed),
            Just(Refusal::Incomplete),
        ]
        .prop_map(Message::Refused)
        .boxed(),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(msg in message(), cluster in any::<u16>()) {
        let frame = encode(&msg, PROTOCOL_VERSION, cluster);
        let (header, back) = decode(&frame, usize::MAX, Some(cluster)).unwrap();
        prop_assert_eq!(header.cluster, cluster);
        prop_assert_eq!(header.version, PROTOCOL_VERSION);
        prop_assert_eq!(back, msg.clone());
        // Fields appended by a newer version are ignored.
        let mut longer = frame.clone();
        longer.extend_from_slice(b"future fields");
        prop_assert_eq!(decode(&longer, usize::MAX, Some(cluster)).unwrap().1, msg);
    }

    #[test]
    fn any_bytes_decode_to_a_message_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, 256, None);
    }

    #[test]
    fn corrupted_frames_never_panic(msg in message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut frame = encode(&msg, PROTOCOL_VERSION, 7);
        for (i, x) in flips {
            let n = frame.len();
            frame[i % n] ^= x;
        }
        let _ = decode(&frame, usize::MAX, Some(7));
        let cut = frame.len() / 2;
        let _ = decode(&frame[..cut], usize::MAX, Some(7));
    }
}

#[test]
fn the_strategy_covers_every_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let mut seen = BTreeSet::new();
    for _ in 0..20_000 {
        seen.insert(
            strategy
                .new_tree(&mut runner)
                .unwrap()
                .current()
                .kind()
                .tag(),
        );
    }
    let all: BTreeSet<u8> = MessageKind::ALL.iter().map(|k| k.tag()).collect();
    assert_eq!(seen, all);
}

#[test]
fn header_errors_are_typed() {
    let ok = encode(&Message::Ping(1), PROTOCOL_VERSION, 9);
    assert!(matches!(
        decode(&ok, 4, Some(9)),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        decode(&ok[..5], 1024, Some(9)),
        Err(DecodeError::TooShort(5))
    ));
    assert!(matches!(
        decode(&ok, 1024, Some(8)),
        Err(DecodeError::WrongCluster(9))
    ));
    let mut bad = ok.clone();
    bad[0] = b'X';
    assert_eq!(decode(&bad, 1024, None).unwrap_err(), DecodeError::BadMagic);
    let mut v = ok.clone();
    v[2] = PROTOCOL_VERSION + 1;
    assert_eq!(
        decode(&v, 1024, None).unwrap_err(),
        DecodeError::UnsupportedVersion(PROTOCOL_VERSION + 1)
    );
    let mut f = ok.clone();
    f[3] = FLAG_AUTHENTICATED;
    assert_eq!(
        decode(&f, 1024, None).unwrap_err(),
        DecodeError::UnsupportedFlags(FLAG_AUTHENTICATED)
    );
    let unknown = encode_raw(250, &[1, 2, 3], PROTOCOL_VERSION, 9);
    assert_eq!(
        decode(&unknown, 1024, Some(9)).unwrap_err(),
        DecodeError::UnknownKind(250)
    );
    let mut trunc = encode(
        &Message::Ack(Ack { seq: 300, load: 7 }),
        PROTOCOL_VERSION,
        9,
    );
    trunc.truncate(HEADER_LEN + 2);
    assert!(matches!(
        decode(&trunc, 1024, Some(9)),
        Err(DecodeError::Malformed {
            kind: MessageKind::Ack,
            ..
        })
    ));
}
