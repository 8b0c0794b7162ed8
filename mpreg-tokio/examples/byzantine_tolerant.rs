//! The guide's **Byzantine-tolerant federation** layout: three regions of
//! three nodes; in each region nodes join through the region's first node,
//! and the regional leaders join each other (the guide's bridges). The nine
//! nodes form one cluster; a replicated idempotent function keeps answering
//! while ⌊(9−1)/3⌋ = 2 nodes crash.
//!
//! This shows the crash-fault half of the topology. Authenticated,
//! signed node state (DESIGN §6), which the Byzantine half needs, is not
//! implemented yet.
//!
//! `cargo run --release -p mpreg-tokio --example byzantine_tolerant`

mod common;

use common::*;
use mpreg_tokio::{FunctionSpec, MemberState, Node};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut regions: Vec<Vec<Node>> = Vec::new();
    for r in 0..3 {
        let mut region: Vec<Node> = Vec::new();
        for i in 0..3 {
            let seed = region.first().or(regions.last().and_then(|p| p.first()));
            let s = node_settings(
                &format!("byzantine-region-{r}-node-{i}"),
                "byzantine-federation",
                &[format!("region-{r}"), "ledger".to_string()],
                seed,
                None,
            )?;
            region.push(Node::start(s).await?);
        }
        regions.push(region);
    }
    let all: Vec<Node> = regions.iter().flatten().cloned().collect();
    println!("byzantine-tolerant layout: 3 regions x 3 nodes, leaders bridged");
    report(
        "every node sees all 9 members",
        full_membership(&all, 9).await?,
    );
    for n in &all {
        n.register_spec(
            FunctionSpec::new("verify")
                .resources(["ledger"])
                .idempotent(true),
            |(tx,): (String,)| async move { Ok::<_, String>(format!("ok:{tx}")) },
        )
        .await?;
    }
    report(
        "verify (on every node) in every catalog",
        propagated(&all, "verify", all[8].id()).await?,
    );
    // Two nodes crash (the tolerated third of nine, rounded down).
    let crashed = [regions[1][1].clone(), regions[2][2].clone()];
    let crash = std::time::Instant::now();
    for c in &crashed {
        c.abort().await;
    }
    let survivors: Vec<Node> = all
        .iter()
        .filter(|n| !crashed.iter().any(|c| c.id() == n.id()))
        .cloned()
        .collect();
    for c in &crashed {
        all_see(&survivors, c.id(), MemberState::Dead).await?;
        report(
            &format!("{} Dead on every survivor (since the crash)", c.info().name),
            crash.elapsed(),
        );
    }
    let mut ok = 0;
    for (i, n) in survivors.iter().enumerate() {
        let r: String = n
            .call("verify", &(format!("tx-{i}"),))
            .locs(["ledger"])
            .await?
            .json()?;
        ok += usize::from(r == format!("ok:tx-{i}"));
    }
    println!(
        "  calls from the {} survivors: {ok} succeeded",
        survivors.len()
    );
    leave_all(&survivors).await;
    Ok(())
}
