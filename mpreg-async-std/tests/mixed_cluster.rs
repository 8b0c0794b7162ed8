//! One cluster of tokio and async-std nodes over WebSocket: the same wire,
//! the same drive loop, two executors.

use mpreg_testkit::{alive_count, eventually, state_of};
use mpreg_tokio::{FunctionSpec, MemberState, Node as TokioNode, Settings};
use std::time::Duration;

/// Three tokio nodes and three async-std nodes, alternating, in a chain:
/// full membership, a function on each kind called from the other, one of
/// each kind killed and marked Dead everywhere within the detection bound,
/// one leave seen everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_and_async_std_nodes_form_one_cluster() {
    let n = 6;
    let mut nodes: Vec<mpreg_drive::Node> = Vec::new();
    for i in 0..n {
        let mut s = Settings::local();
        s.name = format!("{}{i}", if i % 2 == 0 { "tokio" } else { "astd" });
        s.seeds = nodes
            .last()
            .map(|p| vec![p.addr().clone()])
            .unwrap_or_default();
        let node = if i % 2 == 0 {
            TokioNode::start(s).await.map(TokioNode::erase)
        } else {
            mpreg_async_std::Node::start(s)
                .await
                .map(mpreg_async_std::Node::erase)
        };
        nodes.push(node.expect("node starts"));
    }
    for node in &nodes {
        eventually(Duration::from_secs(10), "full membership", || async {
            alive_count(node).await == n
        })
        .await;
    }
    // A function on an async-std node, called from a tokio node; and the
    // reverse.
    for (server, name) in [(1, "on_astd"), (2, "on_tokio")] {
        nodes[server]
            .register_spec(FunctionSpec::new(name), move |(x,): (i64,)| async move {
                Ok::<_, String>(x + server as i64)
            })
            .await
            .unwrap();
    }
    for (caller, name, want) in [(0, "on_astd", 11), (3, "on_tokio", 12)] {
        eventually(Duration::from_secs(5), "the function", || async {
            nodes[caller]
                .call(name, &(10,))
                .await
                .is_ok_and(|r| r.json::<i64>().ok() == Some(want))
        })
        .await;
    }
    // Kill one of each kind.
    let bound = nodes[0].config().detection_bound(n);
    let killed = [nodes[4].id(), nodes[5].id()];
    nodes[4].abort().await;
    nodes[5].abort().await;
    let took = eventually(bound, "both killed nodes Dead everywhere", || async {
        for node in &nodes[..4] {
            for id in killed {
                if state_of(node, id).await != Some(MemberState::Dead) {
                    return false;
                }
            }
        }
        true
    })
    .await;
    eprintln!("killed tokio and async-std nodes Dead everywhere in {took:?} (bound {bound:?})");
    // An async-std node leaves.
    let left = nodes[3].id();
    nodes[3].leave().await;
    eventually(
        Duration::from_secs(5),
        "the leave seen everywhere",
        || async {
            for node in &nodes[..3] {
                if state_of(node, left).await != Some(MemberState::Left) {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// An async-std client, on an async-std task, calls a tokio node.
#[tokio::test]
async fn an_async_std_client_calls_a_tokio_node() {
    let node = TokioNode::start(Settings::local()).await.unwrap();
    let url = node.addr().to_string();
    let got = async_std::task::spawn(async move {
        let client = mpreg_async_std::Client::connect(&url).await?;
        let hi: String = client.call("echo", &("hi",)).await?.json()?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((hi, client.members().await?.len()))
    })
    .await
    .unwrap();
    assert_eq!(got, ("hi".to_string(), 1));
    node.leave().await;
}

/// Settings that name another executor are refused, not ignored.
#[test]
fn a_node_refuses_settings_naming_another_executor() {
    let mut s = Settings::local();
    s.runtime.executor = Some("tokio".into());
    let e = async_std::task::block_on(mpreg_async_std::Node::start(s)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("runtime.executor") && msg.contains("async-std"),
        "{msg}"
    );
    s = Settings::local();
    s.runtime.executor = Some("async-std".into());
    let node = async_std::task::block_on(mpreg_async_std::Node::start(s)).unwrap();
    async_std::task::block_on(node.leave());
}

/// Once `abort` returns, the node's listener is closed: a new node binds
/// the same port at once (the conformance suite's restart relies on it).
#[test]
fn an_aborted_node_frees_its_port_at_once() {
    async_std::task::block_on(async {
        let mut port = 0;
        for _ in 0..20 {
            let s = Settings {
                port,
                ..Settings::local()
            };
            let node = mpreg_async_std::Node::start(s).await.expect("binds");
            port = node.addr().url().unwrap().port;
            node.abort().await;
        }
    });
}
