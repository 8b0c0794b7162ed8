//! The guide's **cross-datacenter** layout: US-East (3 nodes), EU-West (3)
//! and Asia-Pacific (2); each datacenter's nodes join through its first
//! node, and the datacenter leaders join each other. Uses the
//! `global-deployment` template, whose probe timeouts and suspicion suit
//! 80–150 ms links. Loopback has no such latency; the simulator
//! (`mpreg-sim`) runs this layout with real link delays.
//!
//! `cargo run --release -p mpreg-tokio --example cross_datacenter`

mod common;

use common::*;
use mpreg_tokio::{Node, Topology};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let dcs = [("us-east", 3), ("eu-west", 3), ("asia-pacific", 2)];
    let mut leaders: Vec<Node> = Vec::new();
    let mut all: Vec<Node> = Vec::new();
    for (dc, count) in dcs {
        let mut members: Vec<Node> = Vec::new();
        for i in 0..count {
            let seed = members.first().or(leaders.last());
            let s = node_settings(
                &format!("{dc}-node-{i}"),
                "cross-datacenter-federation",
                &[dc.to_string(), format!("{dc}-resource-{i}")],
                seed,
                Some(Topology::GlobalDeployment),
            )?;
            members.push(Node::start(s).await?);
        }
        leaders.push(members[0].clone());
        all.extend(members);
    }
    println!(
        "cross-datacenter layout: 3 + 3 + 2 nodes, leaders bridged, global-deployment template"
    );
    report(
        "every node sees all 8 members",
        full_membership(&all, 8).await?,
    );
    for leader in &leaders {
        let region = leader.info().resources[0].clone();
        leader
            .register("serve", [region.clone()], move |(path,): (String,)| {
                let region = region.clone();
                async move { Ok::<_, String>(format!("{path} served from {region}")) }
            })
            .await?;
    }
    report(
        "serve (one per datacenter) in every catalog",
        propagated(&all, "serve", leaders[2].id()).await?,
    );
    for dc in ["us-east", "eu-west", "asia-pacific"] {
        let r: String = all[0]
            .call("serve", &("/index",))
            .locs([dc])
            .await?
            .json()?;
        println!("  us-east-node-0 asked for {dc}: {r}");
    }
    leave_all(&all).await;
    Ok(())
}
