//! The guide's **hierarchical regional federation** layout: a local tier
//! (4 nodes), a regional tier (2) and a global tier (1); each tier's nodes
//! join through the tier's coordinator, and each coordinator joins the next
//! tier's. Uses the `enterprise` template. Calls name the tier they need
//! with `locs`, and are routed there from anywhere.
//!
//! `cargo run --release -p mpreg-tokio --example hierarchical`

mod common;

use common::*;
use mpreg_tokio::{Node, Topology};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let tiers = [("local", 4), ("regional", 2), ("global", 1)];
    let mut coordinators: Vec<Node> = Vec::new();
    let mut all: Vec<Node> = Vec::new();
    for (tier, count) in tiers {
        let mut members: Vec<Node> = Vec::new();
        for i in 0..count {
            let seed = members.first().or(coordinators.last());
            let s = node_settings(
                &format!("{tier}-node-{i}"),
                "hierarchical-federation",
                &[format!("{tier}-tier"), format!("{tier}-resource-{i}")],
                seed,
                Some(Topology::Enterprise),
            )?;
            members.push(Node::start(s).await?);
        }
        coordinators.push(members[0].clone());
        all.extend(members);
    }
    println!("hierarchical layout: local(4) -> regional(2) -> global(1), enterprise template");
    report(
        "every node sees all 7 members",
        full_membership(&all, 7).await?,
    );
    let global = coordinators[2].clone();
    global
        .register(
            "aggregate",
            ["global-tier"],
            |(xs,): (Vec<i64>,)| async move { Ok::<_, String>(xs.iter().sum::<i64>()) },
        )
        .await?;
    report(
        "aggregate (global tier) in every catalog",
        propagated(&all, "aggregate", global.id()).await?,
    );
    let sum: i64 = all[3]
        .call("aggregate", &(vec![1, 2, 3],))
        .locs(["global-tier"])
        .await?
        .json()?;
    println!("  local-node-3 -> global tier: aggregate([1,2,3]) = {sum}");
    leave_all(&all).await;
    Ok(())
}
