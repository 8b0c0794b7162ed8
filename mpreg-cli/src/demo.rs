//! `mpreg demo`: a cluster in one process over real loopback WebSockets,
//! measured from observed events.

use crate::net::{self, Kind};
use clap::Args;
use mpreg_drive::Node;
use mpreg_tokio::{Event, FunctionSpec, NodeId, Observed, Settings};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Cluster size (at least 4).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(4..=64))]
    nodes: u16,
    /// Longest wait for each step, in seconds.
    #[arg(long, default_value_t = 30)]
    step_timeout: u64,
    /// Transport: ws (WebSocket) or quic (self-signed certificates pinned
    /// by fingerprint).
    #[arg(long, value_enum, default_value_t = Kind::Ws)]
    transport: Kind,
}

struct Demo {
    nodes: Vec<Option<Node>>,
    ids: Vec<NodeId>,
    rx: mpsc::UnboundedReceiver<(usize, Observed)>,
    step_timeout: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:>7.1} ms", d.as_secs_f64() * 1000.0)
}

impl Demo {
    /// Consumes events until `done` holds; returns the time of the event
    /// that completed it.
    async fn until(
        &mut self,
        what: &str,
        mut on_event: impl FnMut(usize, &Event) -> bool,
    ) -> Result<Instant, String> {
        let deadline = tokio::time::Instant::now() + self.step_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((i, o))) => {
                    if on_event(i, &o.event) {
                        return Ok(o.at);
                    }
                }
                Ok(None) => return Err(format!("{what}: every node stopped")),
                Err(_) => {
                    return Err(format!(
                        "{what}: not observed within {:?}",
                        self.step_timeout
                    ));
                }
            }
        }
    }

    fn node(&self, i: usize) -> Result<&Node, String> {
        self.nodes[i]
            .as_ref()
            .ok_or_else(|| format!("node {i} is not running"))
    }
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    match demo(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpreg demo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> Result<(), String> {
    let n = usize::from(args.nodes);
    let began = Instant::now();
    let defaults = Settings::local();
    let bound = defaults.protocol.detection_bound(n);
    say!(
        "mpreg demo: {n} nodes on 127.0.0.1 over {}, seeded as a chain \
         (node i joins through node i-1), default protocol settings \
         (probe period {:?}, detection bound {:?})",
        args.transport.label(),
        defaults.protocol.membership.probe_period,
        bound
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let mut d = Demo {
        nodes: Vec::new(),
        ids: Vec::new(),
        rx,
        step_timeout: Duration::from_secs(args.step_timeout),
    };

    // Step 1: start the chain, wait for full membership everywhere.
    let t0 = Instant::now();
    for i in 0..n {
        let mut s = Settings::local();
        s.name = format!("mesh-node-{i}");
        s.cluster_id = "dynamic-mesh".into();
        s.resources = vec![format!("edge-resource-{i}")];
        if let Some(Some(prev)) = d.nodes.last() {
            s.seeds = vec![prev.addr().clone()];
        }
        let node = net::start(args.transport, s).await.map_err(|e| match e {
            net::Failure::Config(e) | net::Failure::Other(e) => {
                format!("node {i} did not start: {e}")
            }
        })?;
        let mut events = node.events();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(o) = events.next().await {
                if tx.send((i, o)).is_err() {
                    break;
                }
            }
        });
        say!("  started {} at {}", node.info().name, node.addr());
        d.ids.push(node.id());
        d.nodes.push(Some(node));
    }
    drop(tx);
    let ids = d.ids.clone();
    let mut up: Vec<HashSet<NodeId>> = vec![HashSet::new(); n];
    let full = |up: &Vec<HashSet<NodeId>>| {
        (0..n).all(|i| {
            ids.iter()
                .enumerate()
                .all(|(j, id)| i == j || up[i].contains(id))
        })
    };
    let at = d
        .until("full membership", |i, e| {
            match e {
                Event::MemberUp { id, .. } => {
                    up[i].insert(*id);
                }
                Event::MemberDown { id } | Event::MemberLeft { id } => {
                    up[i].remove(id);
                }
                _ => {}
            }
            full(&up)
        })
        .await?;
    say!(
        "[1/5] full membership: every node sees all {n} members Alive      {} after the first node started",
        ms(at - t0)
    );

    // Step 2: a function with resources on one node, into every catalog.
    let host = 2;
    let host_id = d.ids[host];
    let t1 = Instant::now();
    d.node(host)?
        .register_spec(
            FunctionSpec::new("embed")
                .resources(["gpu", "model-a"])
                .idempotent(true),
            |(doc,): (String,)| async move { Ok::<_, String>(format!("embedding of {doc}")) },
        )
        .await
        .map_err(|e| format!("register: {e}"))?;
    let mut have: HashSet<usize> = HashSet::from([host]);
    let at = d
        .until("the function in every catalog", |i, e| {
            if matches!(e, Event::FunctionAdded { node, name, .. } if *node == host_id && name == "embed")
            {
                have.insert(i);
            }
            have.len() == n
        })
        .await?;
    say!(
        "[2/5] embed {{gpu, model-a}} registered on mesh-node-{host}: in every catalog   {}",
        ms(at - t1)
    );

    // Step 3: a call from every node.
    let t2 = Instant::now();
    let mut calls = Vec::new();
    for i in 0..n {
        let f = d
            .node(i)?
            .call("embed", &(format!("doc-{i}"),))
            .locs(["gpu"]);
        calls.push(tokio::spawn(async move { (i, f.await, Instant::now()) }));
    }
    let mut last = t2;
    for c in calls {
        let (i, r, at) = c.await.map_err(|e| format!("call task: {e}"))?;
        let v: String = r
            .map_err(|e| format!("call from node {i} failed: {e}"))?
            .json()
            .map_err(|e| format!("call from node {i}: bad result: {e}"))?;
        if v != format!("embedding of doc-{i}") {
            return Err(format!("call from node {i} returned {v:?}"));
        }
        last = last.max(at);
    }
    say!(
        "[3/5] a call of embed (locs [gpu]) from every node succeeded         {}",
        ms(last - t2)
    );

    // Step 4: crash the last node (no leave); every other marks it Dead.
    let victim = n - 1;
    let victim_id = d.ids[victim];
    let t3 = Instant::now();
    if let Some(node) = d.nodes[victim].take() {
        node.abort().await;
    }
    let mut dead: HashSet<usize> = HashSet::new();
    let at = d
        .until("crash detection", |i, e| {
            if *e == (Event::MemberDown { id: victim_id }) {
                dead.insert(i);
            }
            dead.len() == n - 1
        })
        .await?;
    let took = at - t3;
    say!(
        "[4/5] mesh-node-{victim} crashed (no leave): Dead on every other node  {} (bound {:?})",
        ms(took),
        bound
    );
    if took > bound {
        return Err(format!(
            "crash detection took {took:?}, above the bound {bound:?}"
        ));
    }

    // Step 5: one node leaves gracefully.
    let leaver = n - 2;
    let leaver_id = d.ids[leaver];
    let t4 = Instant::now();
    let node = d.nodes[leaver]
        .take()
        .ok_or_else(|| "the leaving node is gone".to_string())?;
    let leaving = tokio::spawn(async move { node.leave().await });
    let mut left: HashSet<usize> = HashSet::new();
    let at = d
        .until("graceful leave", |i, e| {
            if *e == (Event::MemberLeft { id: leaver_id }) {
                left.insert(i);
            }
            left.len() == n - 2
        })
        .await?;
    say!(
        "[5/5] mesh-node-{leaver} left gracefully: Left on every other node     {}",
        ms(at - t4)
    );
    leaving.await.map_err(|e| format!("leave: {e}"))?;

    for node in d.nodes.iter().flatten() {
        node.leave().await;
    }
    say!(
        "demo OK: every step succeeded in {:.2} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
