//! The guide's **dynamic mesh** (edge computing): six nodes seeded as a
//! linear chain — node i joins through node i−1 — discover each other by
//! gossip. Uses the `edge-computing` template (300 ms protocol period).
//!
//! `cargo run --release -p mpreg-tokio --example dynamic_mesh`

mod common;

use common::*;
use mpreg_tokio::{Node, Topology};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..6 {
        let s = node_settings(
            &format!("mesh-node-{i}"),
            "dynamic-mesh",
            &[format!("edge-resource-{i}")],
            nodes.last(),
            Some(Topology::EdgeComputing),
        )?;
        nodes.push(Node::start(s).await?);
    }
    println!("dynamic mesh: 6 nodes, chain-seeded, edge-computing template");
    report(
        "every node sees all 6 members",
        full_membership(&nodes, 6).await?,
    );
    nodes[5]
        .register("sense", ["edge-resource-5"], |(x,): (f64,)| async move {
            Ok::<_, String>(x * 2.0)
        })
        .await?;
    report(
        "sense (on mesh-node-5) in every catalog",
        propagated(&nodes, "sense", nodes[5].id()).await?,
    );
    let v: f64 = nodes[0]
        .call("sense", &(21.0,))
        .locs(["edge-resource-5"])
        .await?
        .json()?;
    println!("  mesh-node-0 called sense(21.0) on mesh-node-5: {v}");
    leave_all(&nodes).await;
    Ok(())
}
