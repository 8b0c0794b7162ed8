//! Real nodes over loopback WebSockets, in one process. Every wait polls an
//! observable condition with a deadline.

use mpreg_testkit::{alive_count, eventually, state_of};
use mpreg_tokio::{CallError, Client, Event, FunctionSpec, MemberState, Node, Settings};
use std::time::{Duration, Instant};

/// Starts `n` nodes seeded as a chain (node i through node i-1).
async fn chain(n: usize, settings: impl Fn(usize) -> Settings) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut s = settings(i);
        s.name = format!("n{i}");
        if let Some(prev) = nodes.last() {
            s.seeds = vec![prev.addr().clone()];
        }
        nodes.push(Node::start(s).await.expect("node starts"));
    }
    for node in &nodes {
        eventually(Duration::from_secs(10), "full membership", || async {
            alive_count(node).await == n
        })
        .await;
    }
    nodes
}

#[tokio::test]
async fn three_nodes_form_a_cluster_route_calls_and_serve_clients() {
    let nodes = chain(3, |_| Settings::local()).await;
    let (a, c) = (&nodes[0], &nodes[2]);
    c.register_spec(
        FunctionSpec::new("double").resources(["gpu"]),
        |(x,): (i64,)| async move { Ok::<_, String>(2 * x) },
    )
    .await
    .unwrap();
    for n in &nodes {
        eventually(
            Duration::from_secs(5),
            "every catalog has double",
            || async {
                n.catalog()
                    .await
                    .unwrap()
                    .iter()
                    .any(|e| e.name == "double" && e.node == c.id())
            },
        )
        .await;
    }
    let r: i64 = a
        .call("double", &(21,))
        .locs(["gpu"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 42);
    assert!(matches!(
        a.call("double", &(1,)).locs(["tpu"]).await,
        Err(CallError::NoProvider { .. })
    ));
    assert!(matches!(
        a.call("nope", &()).await,
        Err(CallError::NotFound(_))
    ));
    let e = a.call("double", &("x",)).locs(["gpu"]).await.unwrap_err();
    assert!(
        matches!(e, CallError::HandlerFailed(ref m) if m.contains("invalid arguments")),
        "{e}"
    );
    // Built-ins exist on every node.
    let hi: String = a.call("echo", &("hi",)).await.unwrap().json().unwrap();
    assert_eq!(hi, "hi");
    let both: (i64, String) = a.call("echos", &(1, "x")).await.unwrap().json().unwrap();
    assert_eq!(both, (1, "x".to_string()));

    // A client on b's port: calls are routed by b.
    let client = Client::connect(nodes[1].addr().as_str()).await.unwrap();
    assert_eq!(client.node_id(), nodes[1].id());
    assert_eq!(client.cluster_id(), "default");
    let r: i64 = client
        .call("double", &(5,))
        .locs(["gpu"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 10);
    let members = client.members().await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().any(|m| m.name == "n2"));
    let catalog = client.catalog().await.unwrap();
    assert!(
        catalog
            .iter()
            .any(|e| e.name == "double" && e.resources == ["gpu"])
    );
    assert_eq!(
        catalog.iter().filter(|e| e.name == "echo").count(),
        3,
        "{catalog:?}"
    );
}

#[tokio::test]
async fn leave_is_seen_everywhere_and_abort_is_detected_within_the_bound() {
    let nodes = chain(4, |_| Settings::local()).await;
    let mut watchers: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    // Graceful leave of node 3.
    let leaver = nodes[3].id();
    nodes[3].leave().await;
    assert!(nodes[3].is_stopped());
    for n in &nodes[..3] {
        eventually(Duration::from_secs(2), "Left everywhere", || async {
            state_of(n, leaver).await == Some(MemberState::Left)
        })
        .await;
    }
    // Crash of node 2: others mark it Dead within the documented bound.
    let victim = nodes[2].id();
    let bound = nodes[0].config().detection_bound(3);
    let t0 = Instant::now();
    nodes[2].abort().await;
    for n in &nodes[..2] {
        eventually(bound, "Dead everywhere", || async {
            state_of(n, victim).await == Some(MemberState::Dead)
        })
        .await;
    }
    eprintln!(
        "crash detected everywhere after {:?} (bound {bound:?})",
        t0.elapsed()
    );
    // The event stream saw it too.
    let mut saw = false;
    while let Some(o) = watchers[0].try_next() {
        saw |= o.event == Event::MemberDown { id: victim };
    }
    assert!(saw);
}

#[tokio::test]
async fn a_blocking_handler_does_not_get_its_node_suspected() {
    let nodes = chain(3, |_| Settings::local()).await;
    let slow = &nodes[1];
    slow.register_blocking("sleep", ["slow"], |(secs,): (u64,)| {
        std::thread::sleep(Duration::from_secs(secs));
        Ok::<_, String>("done")
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "sleep in catalog", || async {
        nodes[0]
            .catalog()
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "sleep")
    })
    .await;
    let mut watch: Vec<_> = [&nodes[0], &nodes[2]].iter().map(|n| n.events()).collect();
    let started = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let f = nodes[0]
                .call("sleep", &(5,))
                .locs(["slow"])
                .timeout(Duration::from_secs(20));
            tokio::spawn(f.into_future())
        })
        .collect();
    // While the handlers block, the node still serves quick calls.
    let t = Instant::now();
    let r: String = nodes[2]
        .call("echo", &("ping",))
        .locs(Vec::<String>::new())
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, "ping");
    assert!(t.elapsed() < Duration::from_secs(1));
    for c in calls {
        let r: String = c.await.unwrap().unwrap().json().unwrap();
        assert_eq!(r, "done");
    }
    assert!(started.elapsed() >= Duration::from_secs(5));
    for w in &mut watch {
        while let Some(o) = w.try_next() {
            assert_ne!(
                o.event,
                Event::MemberSuspect { id: slow.id() },
                "the blocked node was suspected"
            );
        }
    }
    for n in &nodes {
        assert_eq!(alive_count(n).await, 3);
    }
}

#[tokio::test]
async fn large_calls_are_chunked_and_oversized_ones_refused() {
    let nodes = chain(2, |_| Settings::local()).await;
    nodes[1]
        .register_raw(
            FunctionSpec::new("len").resources(["far"]),
            |b| async move { Ok(bytes::Bytes::from(b.len().to_string())) },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "len in catalog", || async {
        nodes[0]
            .catalog()
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "len")
    })
    .await;
    let big = vec![7u8; 4 << 20];
    let r = nodes[0].call_raw("len", big).locs(["far"]).await.unwrap();
    assert_eq!(r.bytes().as_ref(), b"4194304");
    let huge = vec![0u8; 17 << 20];
    assert!(matches!(
        nodes[0].call_raw("len", huge).locs(["far"]).await,
        Err(CallError::Rejected(_))
    ));
    let stats = nodes[1].stats().await.unwrap();
    assert_eq!(stats.queue_overflows, 0);
    assert_eq!(stats.live_members, 2);
}

#[tokio::test]
async fn simultaneous_dials_settle_on_one_connection_per_peer() {
    let fast_idle = || {
        let mut s = Settings::local();
        s.protocol.connections.idle_timeout = Duration::from_millis(300);
        s
    };
    for round in 0..3 {
        let a = Node::start(fast_idle()).await.unwrap();
        let b = Node::start(Settings {
            seeds: vec![a.addr().clone()],
            ..fast_idle()
        })
        .await
        .unwrap();
        // a dials b at the same moment b dials a (usually before b's Hello
        // arrives, so both ends hold two connections and must agree on one).
        a.join(vec![b.addr().clone()]).await.unwrap();
        for n in [&a, &b] {
            eventually(Duration::from_secs(10), "two members alive", || async {
                alive_count(n).await == 2
            })
            .await;
        }
        for n in [&a, &b] {
            eventually(
                Duration::from_secs(10),
                "duplicates closed: one connection per peer",
                || async { n.stats().await.unwrap().connections == 1 },
            )
            .await;
        }
        let r: u64 = a.call("echo", &(round,)).await.unwrap().json().unwrap();
        assert_eq!(r, round);
    }
}

#[tokio::test]
async fn past_the_invocation_cap_calls_are_answered_overloaded() {
    let nodes = chain(2, |i| {
        let mut s = Settings::local();
        if i == 1 {
            s.protocol.limits.max_invocations = 1;
        }
        s
    })
    .await;
    nodes[1]
        .register("hold", ["one"], |(ms,): (u64,)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(ms)
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "hold in catalog", || async {
        nodes[0]
            .catalog()
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "hold")
    })
    .await;
    let first = tokio::spawn(nodes[0].call("hold", &(1500,)).locs(["one"]).into_future());
    eventually(Duration::from_secs(5), "the first call running", || async {
        nodes[1].stats().await.unwrap().running_invocations == 1
    })
    .await;
    let second = nodes[0].call("hold", &(1,)).locs(["one"]).await;
    assert_eq!(second, Err(CallError::Overloaded));
    assert!(first.await.unwrap().is_ok());
}

#[tokio::test]
async fn dropping_a_call_cancels_the_running_handler() {
    let nodes = chain(2, |_| Settings::local()).await;
    nodes[1]
        .register("forever", ["far"], |(): ()| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "forever in catalog", || async {
        nodes[0]
            .catalog()
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "forever")
    })
    .await;
    let call = tokio::spawn(nodes[0].call("forever", &()).locs(["far"]).into_future());
    eventually(Duration::from_secs(5), "the handler running", || async {
        nodes[1].stats().await.unwrap().running_invocations == 1
    })
    .await;
    call.abort();
    eventually(Duration::from_secs(5), "the handler cancelled", || async {
        nodes[1].stats().await.unwrap().running_invocations == 0
    })
    .await;
    assert_eq!(nodes[0].stats().await.unwrap().pending_calls, 0);
}

#[tokio::test]
async fn leave_lets_running_calls_finish_and_sends_new_ones_elsewhere() {
    let nodes = chain(3, |_| Settings::local()).await;
    for n in &nodes[1..] {
        n.register_spec(
            FunctionSpec::new("work").resources(["w"]).idempotent(true),
            |(ms,): (u64,)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, String>(ms)
            },
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(5), "two providers", || async {
        nodes[0]
            .catalog()
            .await
            .unwrap()
            .iter()
            .filter(|e| e.name == "work")
            .count()
            == 2
    })
    .await;
    // Start calls until one runs on node 1, then make node 1 leave.
    let leaver = &nodes[1];
    let mut running = Vec::new();
    eventually(
        Duration::from_secs(5),
        "a call running on the leaver",
        || {
            running.push(tokio::spawn(
                nodes[0].call("work", &(800,)).locs(["w"]).into_future(),
            ));
            async { leaver.stats().await.unwrap().running_invocations > 0 }
        },
    )
    .await;
    let leaving = {
        let l = leaver.clone();
        tokio::spawn(async move { l.leave().await })
    };
    // New calls go to node 2 while node 1 drains.
    for i in 0..5u64 {
        let r: u64 = nodes[0]
            .call("work", &(i,))
            .locs(["w"])
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r, i);
    }
    for c in running {
        let r: u64 = c.await.unwrap().unwrap().json().unwrap();
        assert_eq!(r, 800);
    }
    leaving.await.unwrap();
    eventually(Duration::from_secs(2), "Left", || async {
        state_of(&nodes[0], leaver.id()).await == Some(MemberState::Left)
    })
    .await;
}

/// DESIGN §4: a graceful leave loses no outcome. 64 callers on one node
/// keep a non-idempotent function served by three nodes busy; one
/// provider leaves. Calls it accepted are answered before it closes; calls
/// that reach it while it drains are refused with an answer saying they
/// did not run, and go elsewhere: none ends `OutcomeUnknown`, none runs
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_under_load_loses_no_outcome() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let nodes = chain(4, |_| Settings::local()).await;
    let runs: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    for n in &nodes[1..] {
        let runs = runs.clone();
        n.register_spec(
            FunctionSpec::new("write").resources(["disk"]),
            move |(k, ms): (u64, u64)| {
                let runs = runs.clone();
                async move {
                    *runs.lock().unwrap().entry(k).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, String>(k)
                }
            },
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(5), "three providers", || async {
        nodes[0]
            .catalog()
            .await
            .unwrap()
            .iter()
            .filter(|e| e.name == "write")
            .count()
            == 3
    })
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut callers = Vec::new();
    for _ in 0..64 {
        let (node, stop, next) = (nodes[0].clone(), stop.clone(), next.clone());
        callers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let r = node.call("write", &(k, 1 + k % 20)).locs(["disk"]).await;
                outcomes.push((k, r.map(|v| v.json::<u64>().ok())));
            }
            outcomes
        }));
    }
    let leaver = nodes[2].clone();
    eventually(
        Duration::from_secs(5),
        "calls running on the leaver",
        || async { leaver.stats().await.unwrap().running_invocations >= 4 },
    )
    .await;
    leaver.leave().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in callers {
        for (k, r) in c.await.unwrap() {
            total += 1;
            assert!(
                !matches!(r, Err(CallError::OutcomeUnknown)),
                "call {k}: outcome unknown"
            );
            assert_eq!(r, Ok(Some(k)), "call {k}");
        }
    }
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), total, "every call ran");
    assert!(runs.values().all(|n| *n == 1), "a call ran twice");
    eprintln!("{total} calls, none lost, while a provider left");
}
