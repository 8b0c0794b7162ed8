//! The guide's **self-healing** layout: ten nodes joined through node 0
//! (a star of seeds). Three nodes crash; the others detect it, the catalog
//! follows (their functions stop being routable), and three replacement
//! processes join through any survivor and are served again.
//!
//! Network partitions and their healing (5-5, 7-3, 6-2-2) need a network
//! that can drop packets between groups; `mpreg-sim` runs those scenarios.
//!
//! `cargo run --release -p mpreg-tokio --example self_healing`

mod common;

use common::*;
use mpreg_tokio::{FunctionSpec, MemberState, Node};

async fn start(i: usize, seed: &Node) -> Result<Node, Error> {
    let s = node_settings(
        &format!("self-healing-node-{i}"),
        "self-healing-mesh",
        &["resilient-resource".to_string()],
        Some(seed),
        None,
    )?;
    let n = Node::start(s).await?;
    n.register_spec(
        FunctionSpec::new("heal")
            .resources(["resilient-resource"])
            .idempotent(true),
        move |(x,): (u64,)| async move { Ok::<_, String>(x + 1) },
    )
    .await?;
    Ok(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let hub = Node::start(node_settings(
        "self-healing-node-0",
        "self-healing-mesh",
        &[],
        None,
        None,
    )?)
    .await?;
    let mut nodes = vec![hub.clone()];
    for i in 1..10 {
        nodes.push(start(i, &hub).await?);
    }
    println!("self-healing layout: 10 nodes seeded through node 0");
    report(
        "every node sees all 10 members",
        full_membership(&nodes, 10).await?,
    );
    let crashed: Vec<Node> = nodes.drain(7..).collect();
    let crash = std::time::Instant::now();
    for c in &crashed {
        c.abort().await;
    }
    for c in &crashed {
        all_see(&nodes, c.id(), MemberState::Dead).await?;
        report(
            &format!("{} Dead on every survivor (since the crash)", c.info().name),
            crash.elapsed(),
        );
    }
    let r: u64 = nodes[0]
        .call("heal", &(1,))
        .locs(["resilient-resource"])
        .await?
        .json()?;
    println!("  a call after the crashes was served: heal(1) = {r}");
    for i in 10..13 {
        let seed = nodes[i % 7].clone();
        nodes.push(start(i, &seed).await?);
    }
    report(
        "the 3 replacements seen Alive everywhere",
        full_membership(&nodes, 10).await?,
    );
    leave_all(&nodes).await;
    Ok(())
}
