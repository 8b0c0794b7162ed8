//! Shared helpers of the topology examples: start nodes with a seed wiring,
//! wait for what the events say, print what was measured.

#![allow(dead_code, unreachable_pub)]

use mpreg_tokio::{Event, MemberState, Node, NodeId, Settings, Topology};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error>;

/// Settings of one example node: loopback, a free port, a template.
pub fn node_settings(
    name: &str,
    cluster: &str,
    resources: &[String],
    seed: Option<&Node>,
    topology: Option<Topology>,
) -> Result<Settings, Error> {
    let mut layer = mpreg_tokio::Layer::default();
    layer
        .set("port", 0)
        .set("name", name)
        .set("cluster_id", cluster)
        .set("resources", resources.to_vec());
    if let Some(s) = seed {
        layer.set("seeds", vec![s.addr().to_string()]);
    }
    if let Some(t) = topology {
        layer.set("topology", t.name());
    }
    Ok(Settings::resolve([layer])?)
}

/// Polls `cond` every 10 ms until it holds; returns how long it took.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut cond: F) -> Result<Duration, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        if start.elapsed() > within {
            return Err(format!("{what}: not reached within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(start.elapsed())
}

/// Waits until every node sees `n` members Alive.
pub async fn full_membership(nodes: &[Node], n: usize) -> Result<Duration, Error> {
    wait_for("full membership", Duration::from_secs(30), || async {
        for node in nodes {
            let alive = node.members().await.map_or(0, |ms| {
                ms.iter().filter(|m| m.state == MemberState::Alive).count()
            });
            if alive != n {
                return false;
            }
        }
        true
    })
    .await
}

/// Waits until every node's catalog lists `function` on `owner`.
pub async fn propagated(nodes: &[Node], function: &str, owner: NodeId) -> Result<Duration, Error> {
    wait_for("catalog propagation", Duration::from_secs(30), || async {
        for node in nodes {
            let has = node
                .catalog()
                .await
                .map(|c| c.iter().any(|e| e.name == function && e.node == owner))
                .unwrap_or(false);
            if !has {
                return false;
            }
        }
        true
    })
    .await
}

/// Waits until every node in `observers` holds `id` in `state`.
pub async fn all_see(
    observers: &[Node],
    id: NodeId,
    state: MemberState,
) -> Result<Duration, Error> {
    wait_for("member state", Duration::from_secs(30), || async {
        for node in observers {
            let s = node
                .members()
                .await
                .ok()
                .and_then(|ms| ms.into_iter().find(|m| m.id == id).map(|m| m.state));
            if s != Some(state) {
                return false;
            }
        }
        true
    })
    .await
}

/// Prints a figure.
pub fn report(what: &str, d: Duration) {
    println!("  {what:<58} {:>8.1} ms", d.as_secs_f64() * 1000.0);
}

/// Counts events of one kind seen so far on a node's stream.
pub fn count(events: &mut mpreg_tokio::Events, f: impl Fn(&Event) -> bool) -> usize {
    let mut n = 0;
    while let Some(o) = events.try_next() {
        n += usize::from(f(&o.event));
    }
    n
}

/// Leaves every node gracefully.
pub async fn leave_all(nodes: &[Node]) {
    for n in nodes {
        n.leave().await;
    }
}
