//! Several `mpreg server start` processes on loopback: they form one
//! cluster, route client calls, survive `kill -9` of a provider of a
//! replicated idempotent function without a failed call, and see a SIGTERM
//! as a graceful leave.

mod common;

use common::{Server, alive, eventually, run, state_of};
use mpreg_tokio::{Client, MemberState, Settings};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the measured time to observe a state may add to the real one: the
/// polling interval plus a query round trip.
const POLL_SLACK: Duration = Duration::from_millis(50);

#[tokio::test]
async fn processes_form_a_cluster_fail_over_and_leave() {
    // A chain, as in the guide's dynamic mesh: each joins through the last.
    let s0 = Server::start(
        &[
            "--port",
            "0",
            "--name",
            "p0",
            "--resource",
            "zero",
            "--fn-echo",
            "only0",
        ],
        &[],
    );
    let s1 = Server::start(
        &[
            "--port",
            "0",
            "--name",
            "p1",
            "--seed",
            &s0.url,
            "--resource",
            "rep-host",
            "--fn-echo",
            "rep",
        ],
        &[],
    );
    let s2 = Server::start(
        &[
            "--port",
            "0",
            "--name",
            "p2",
            "--seed",
            &s1.url,
            "--resource",
            "rep-host",
            "--fn-echo",
            "rep",
        ],
        &[],
    );
    let s3 = Server::start(&["--port", "0", "--name", "p3", "--seed", &s2.url], &[]);
    let mut servers = [s0, s1, s2, s3];
    let mut clients = Vec::new();
    for s in &servers {
        clients.push(Client::connect(&s.url).await.expect("client connects"));
    }
    for c in &clients {
        eventually(
            Duration::from_secs(15),
            "4 members alive everywhere",
            || async { alive(c).await == 4 },
        )
        .await;
        eventually(
            Duration::from_secs(10),
            "functions in every catalog",
            || async {
                let cat = c.catalog().await.unwrap_or_default();
                cat.iter().filter(|e| e.name == "rep").count() == 2
                    && cat.iter().any(|e| e.name == "only0")
            },
        )
        .await;
    }

    // `mpreg client call` of a function registered on p0 reaches it from
    // every node.
    for s in &servers {
        let out = run(
            &[
                "client", "--url", &s.url, "call", "only0", "hello", "--locs", "zero",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "call via {}: {}",
            s.url,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"hello\"");
    }
    // Errors go to stderr with a non-zero exit.
    let out = run(
        &["client", "--url", &servers[3].url, "call", "missing"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));

    // A client calls the replicated idempotent `rep` in a loop through p3
    // while p1, one of its two providers, is killed with SIGKILL.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let caller = {
        let (c, stop, ok, failed) = (clients[3].clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match c.call("rep", &(i,)).locs(["rep-host"]).await {
                    Ok(r) if r.json::<u64>().ok() == Some(i) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("call {i} failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    eventually(Duration::from_secs(5), "calls flowing", || async {
        ok.load(Ordering::Relaxed) >= 50
    })
    .await;
    let bound = Settings::default().protocol.detection_bound(4);
    let victim = servers[1].id;
    let killed = Instant::now();
    servers[1].kill9();
    for i in [0, 2, 3] {
        eventually(bound + POLL_SLACK, "p1 Dead everywhere", || async {
            state_of(&clients[i], victim).await == Some(MemberState::Dead)
        })
        .await;
    }
    let detected = killed.elapsed();
    eprintln!("kill -9 detected everywhere after {detected:?} (bound {bound:?})");
    let before = ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(5), "calls still flowing", || async {
        ok.load(Ordering::Relaxed) >= before + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    caller.await.expect("caller ends");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a call failed");
    assert!(detected <= bound + POLL_SLACK);

    // SIGTERM of p2 with no call in flight: Left everywhere within 2 s.
    let leaver = servers[2].id;
    let t = Instant::now();
    let status = servers[2].terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    for i in [0, 3] {
        eventually(
            Duration::from_secs(2).saturating_sub(t.elapsed()),
            "p2 Left everywhere",
            || async { state_of(&clients[i], leaver).await == Some(MemberState::Left) },
        )
        .await;
    }
    eprintln!("SIGTERM: Left everywhere after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(2));
}
