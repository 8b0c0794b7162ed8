//! Topologies: how a cluster is wired up. The guide's five are here; users
//! add their own by implementing [`TopologyBuilder`] (the guide's "custom
//! topology" extension point).
//!
//! Until federation lands, each topology is one cluster, as in the guide:
//! what differs is the seeding, the resources and the links.

use crate::{Link, Sim};
use mpreg_proto::{Config, FunctionSpec};
use std::time::Duration;

/// A built cluster.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Every node, in creation order.
    pub nodes: Vec<usize>,
    /// Named groups of nodes (regions, tiers, datacenters).
    pub groups: Vec<(String, Vec<usize>)>,
    /// Partition scenarios this topology is tested with: each a name and
    /// the groups the network splits into.
    pub partitions: Vec<(String, Vec<Vec<usize>>)>,
    /// Whether the groups are separate clusters bridged together (then
    /// membership and failure detection are per group).
    pub federated: bool,
}

/// Builds a cluster inside a simulator.
pub trait TopologyBuilder {
    /// The name reports use.
    fn name(&self) -> String;
    /// Adds the nodes (with their links and resources) and starts their
    /// joins. The simulator's clock has not run yet.
    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology;
}

fn named(cfg: &Config, name: String) -> Config {
    Config {
        name,
        ..cfg.clone()
    }
}

/// Registers a per-node resource function, as the guide's nodes each carry
/// a resource tag.
fn with_resource(sim: &mut Sim, node: usize, resource: String) {
    sim.register(
        node,
        FunctionSpec::new("resource-info").resources([resource]),
    );
}

/// Dynamic mesh: a chain (node i seeded with node i − 1) that gossip turns
/// into a connected overlay.
#[derive(Clone, Debug)]
pub struct DynamicMesh {
    /// Nodes.
    pub nodes: usize,
}

impl TopologyBuilder for DynamicMesh {
    fn name(&self) -> String {
        format!("Dynamic Mesh ({})", self.nodes)
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let nodes: Vec<usize> = (0..self.nodes)
            .map(|i| sim.add_node(named(cfg, format!("mesh-node-{i}"))))
            .collect();
        for (i, &n) in nodes.iter().enumerate() {
            with_resource(sim, n, format!("edge-resource-{i}"));
            if i > 0 {
                sim.join(n, &[nodes[i - 1]]);
            }
        }
        Topology {
            groups: vec![("mesh".into(), nodes.clone())],
            nodes,
            partitions: Vec::new(),
            federated: false,
        }
    }
}

/// Byzantine tolerant: 3 regions of 3; members seed their region's leader,
/// leaders seed each other pairwise.
#[derive(Clone, Debug)]
pub struct ByzantineTolerant;

impl TopologyBuilder for ByzantineTolerant {
    fn name(&self) -> String {
        "Byzantine Tolerant (9)".into()
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let mut t = Topology::default();
        let mut leaders = Vec::new();
        for r in 0..3 {
            let region: Vec<usize> = (0..3)
                .map(|i| sim.add_node(named(cfg, format!("byzantine-region-{r}-node-{i}"))))
                .collect();
            for (i, &n) in region.iter().enumerate() {
                with_resource(sim, n, format!("region-{r}-resource-{i}"));
                if i > 0 {
                    sim.join(n, &[region[0]]);
                }
            }
            leaders.push(region[0]);
            t.nodes.extend(&region);
            t.groups.push((format!("region-{r}"), region));
        }
        for i in 0..leaders.len() {
            let others: Vec<usize> = leaders[i + 1..].to_vec();
            if !others.is_empty() {
                sim.join(leaders[i], &others);
            }
        }
        t
    }
}

/// Hierarchical: tiers (local, regional, global); members seed their tier's
/// coordinator, coordinators are chained upward.
#[derive(Clone, Debug)]
pub struct Hierarchical {
    /// Nodes per tier, lowest first (the guide: 4, 2, 1; its enterprise
    /// template: 16, 6, 2).
    pub tiers: Vec<usize>,
}

impl TopologyBuilder for Hierarchical {
    fn name(&self) -> String {
        let sizes: Vec<String> = self.tiers.iter().map(|n| n.to_string()).collect();
        format!("Hierarchical ({})", sizes.join("+"))
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let names = ["Local", "Regional", "Global"];
        let mut t = Topology::default();
        let mut coordinators = Vec::new();
        for (k, &size) in self.tiers.iter().enumerate() {
            let tier_name = names.get(k).copied().unwrap_or("Tier");
            let tier: Vec<usize> = (0..size)
                .map(|i| sim.add_node(named(cfg, format!("{tier_name}-Node-{i}"))))
                .collect();
            for (i, &n) in tier.iter().enumerate() {
                with_resource(sim, n, format!("{}-resource-{i}", tier_name.to_lowercase()));
                if i > 0 {
                    sim.join(n, &[tier[0]]);
                }
            }
            coordinators.push(tier[0]);
            t.nodes.extend(&tier);
            t.groups.push((tier_name.to_string(), tier));
        }
        for w in coordinators.windows(2) {
            sim.join(w[0], &[w[1]]);
        }
        t
    }
}

/// Cross-datacenter: US-East (3), EU-West (3), Asia-Pacific (2) with
/// intra-DC latencies of 5, 8 and 12 ms and inter-DC links of 80 (US–EU),
/// 150 (US–AP) and 120 ms (EU–AP). Members seed their DC's leader; leaders
/// seed each other.
#[derive(Clone, Debug)]
pub struct CrossDatacenter;

/// The guide's datacenters: name, nodes, intra-DC latency in ms.
pub const DATACENTERS: [(&str, usize, u64); 3] = [
    ("US-East", 3, 5),
    ("EU-West", 3, 8),
    ("Asia-Pacific", 2, 12),
];

impl TopologyBuilder for CrossDatacenter {
    fn name(&self) -> String {
        "Cross-Datacenter (8)".into()
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let loss = sim.net.default_link.loss;
        let link = |ms: u64| Link::latency(Duration::from_millis(ms)).with_loss(loss);
        for (z, (_, _, ms)) in DATACENTERS.iter().enumerate() {
            sim.set_zone_link(z as u16, z as u16, link(*ms));
        }
        sim.set_zone_link(0, 1, link(80));
        sim.set_zone_link(0, 2, link(150));
        sim.set_zone_link(1, 2, link(120));
        let mut t = Topology::default();
        let mut leaders = Vec::new();
        for (z, (dc, size, _)) in DATACENTERS.iter().enumerate() {
            let nodes: Vec<usize> = (0..*size)
                .map(|i| sim.add_node_in_zone(named(cfg, format!("{dc}-Node-{i}")), z as u16))
                .collect();
            for (i, &n) in nodes.iter().enumerate() {
                with_resource(sim, n, format!("{}-resource-{i}", dc.to_lowercase()));
                if i > 0 {
                    sim.join(n, &[nodes[0]]);
                }
            }
            leaders.push(nodes[0]);
            t.nodes.extend(&nodes);
            t.groups.push((dc.to_string(), nodes));
        }
        for i in 0..leaders.len() {
            let others: Vec<usize> = leaders[i + 1..].to_vec();
            if !others.is_empty() {
                sim.join(leaders[i], &others);
            }
        }
        t
    }
}

/// Self-healing: 10 nodes seeded as a star around node 0, tested with the
/// guide's partitions 5-5, 7-3 and 6-2-2.
#[derive(Clone, Debug)]
pub struct SelfHealing;

impl TopologyBuilder for SelfHealing {
    fn name(&self) -> String {
        "Self-Healing (10)".into()
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let nodes: Vec<usize> = (0..10)
            .map(|i| sim.add_node(named(cfg, format!("self-healing-node-{i}"))))
            .collect();
        for (i, &n) in nodes.iter().enumerate() {
            with_resource(sim, n, format!("resilient-resource-{i}"));
            if i > 0 {
                sim.join(n, &[nodes[0]]);
            }
        }
        let g = |ix: &[usize]| ix.iter().map(|i| nodes[*i]).collect::<Vec<usize>>();
        Topology {
            groups: vec![("mesh".into(), nodes.clone())],
            partitions: vec![
                (
                    "Split Brain (5-5)".into(),
                    vec![g(&[0, 1, 2, 3, 4]), g(&[5, 6, 7, 8, 9])],
                ),
                (
                    "Minority Partition (7-3)".into(),
                    vec![g(&[0, 1, 2, 3, 4, 5, 6]), g(&[7, 8, 9])],
                ),
                (
                    "Network Island (6-2-2)".into(),
                    vec![g(&[0, 1, 2, 3, 4, 5]), g(&[6, 7]), g(&[8, 9])],
                ),
            ],
            nodes,
            federated: false,
        }
    }
}

fn federated(cfg: &Config, cluster: &str, name: String) -> Config {
    Config {
        cluster_id: cluster.into(),
        name,
        federation: mpreg_proto::FederationConfig {
            policy: mpreg_proto::Policy::Permissive,
            bridges: Vec::new(),
        },
        ..cfg.clone()
    }
}

/// The hierarchical topology as tiers of clusters: local clusters bridge to
/// their regional cluster, regional clusters to the global one; summaries
/// aggregate upward and calls cross the tiers.
#[derive(Clone, Debug)]
pub struct FederatedHierarchical {
    /// Local clusters: (nodes, index of their regional cluster).
    pub locals: Vec<(usize, usize)>,
    /// Regional clusters' sizes.
    pub regionals: Vec<usize>,
    /// Global cluster's size.
    pub global: usize,
}

impl FederatedHierarchical {
    /// The guide's 4+2+1: two local clusters of 2, two regional clusters
    /// of 1, a global cluster of 1.
    pub fn small() -> Self {
        FederatedHierarchical {
            locals: vec![(2, 0), (2, 1)],
            regionals: vec![1, 1],
            global: 1,
        }
    }

    /// The guide's enterprise 16+6+2: four local clusters of 4, two
    /// regional clusters of 3, a global cluster of 2.
    pub fn enterprise() -> Self {
        FederatedHierarchical {
            locals: vec![(4, 0), (4, 0), (4, 1), (4, 1)],
            regionals: vec![3, 3],
            global: 2,
        }
    }
}

fn federated_cluster(
    sim: &mut Sim,
    cfg: &Config,
    cluster: &str,
    n: usize,
    zone: u16,
) -> Vec<usize> {
    let nodes: Vec<usize> = (0..n)
        .map(|i| sim.add_node_in_zone(federated(cfg, cluster, format!("{cluster}-node-{i}")), zone))
        .collect();
    for (i, &node) in nodes.iter().enumerate() {
        with_resource(sim, node, format!("{cluster}-resource-{i}"));
        if i > 0 {
            sim.join(node, &[nodes[0]]);
        }
    }
    nodes
}

impl TopologyBuilder for FederatedHierarchical {
    fn name(&self) -> String {
        let local: usize = self.locals.iter().map(|l| l.0).sum();
        let regional: usize = self.regionals.iter().sum();
        format!("Hierarchical fed. ({local}+{regional}+{})", self.global)
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let mut t = Topology {
            federated: true,
            ..Topology::default()
        };
        let global = federated_cluster(sim, cfg, "global", self.global, 0);
        let mut regional = Vec::new();
        for (k, n) in self.regionals.iter().enumerate() {
            let name = format!("regional-{k}");
            let r = federated_cluster(sim, cfg, &name, *n, 0);
            sim.bridge(r[0], "global", &[global[0]]);
            regional.push((name, r));
        }
        for (k, (n, region)) in self.locals.iter().enumerate() {
            let name = format!("local-{k}");
            let l = federated_cluster(sim, cfg, &name, *n, 0);
            let (rname, r) = &regional[*region];
            sim.bridge(l[0], rname, &[r[0]]);
            t.nodes.extend(&l);
            t.groups.push((name, l));
        }
        for (name, r) in regional {
            t.nodes.extend(&r);
            t.groups.push((name, r));
        }
        t.nodes.extend(&global);
        t.groups.push(("global".into(), global));
        t
    }
}

/// Cross-datacenter as three clusters (US-East 3, EU-West 3, Asia-Pacific
/// 2) whose first nodes bridge pairwise over 80, 120 and 150 ms links.
#[derive(Clone, Debug)]
pub struct FederatedCrossDatacenter;

impl TopologyBuilder for FederatedCrossDatacenter {
    fn name(&self) -> String {
        "Cross-DC fed. (3+3+2)".into()
    }

    fn build(&self, sim: &mut Sim, cfg: &Config) -> Topology {
        let loss = sim.net.default_link.loss;
        let link = |ms: u64| Link::latency(Duration::from_millis(ms)).with_loss(loss);
        for (z, (_, _, ms)) in DATACENTERS.iter().enumerate() {
            sim.set_zone_link(z as u16, z as u16, link(*ms));
        }
        sim.set_zone_link(0, 1, link(80));
        sim.set_zone_link(0, 2, link(150));
        sim.set_zone_link(1, 2, link(120));
        let mut t = Topology {
            federated: true,
            ..Topology::default()
        };
        for (z, (dc, size, _)) in DATACENTERS.iter().enumerate() {
            let c = federated_cluster(sim, cfg, &dc.to_lowercase(), *size, z as u16);
            t.nodes.extend(&c);
            t.groups.push((dc.to_lowercase(), c));
        }
        let leaders: Vec<(String, usize)> =
            t.groups.iter().map(|(n, g)| (n.clone(), g[0])).collect();
        for (i, (_, a)) in leaders.iter().enumerate() {
            for (name, b) in &leaders[i + 1..] {
                sim.bridge(*a, name, &[*b]);
            }
        }
        t
    }
}

/// The guide's published figures for a topology: connection efficiency (%),
/// function propagation (%), setup time (ms).
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct GuideFigures {
    /// "Connection efficiency".
    pub connection_efficiency_pct: f64,
    /// "Function propagation".
    pub propagation_pct: f64,
    /// "Setup time".
    pub setup_ms: f64,
}

/// The guide's five topologies as it measured them, with its figures.
pub fn guide_topologies() -> Vec<(Box<dyn TopologyBuilder>, GuideFigures)> {
    let f = |e, p, s| GuideFigures {
        connection_efficiency_pct: e,
        propagation_pct: p,
        setup_ms: s,
    };
    vec![
        (Box::new(DynamicMesh { nodes: 6 }), f(83.33, 100.0, 1247.0)),
        (Box::new(DynamicMesh { nodes: 8 }), f(83.33, 100.0, 1247.0)),
        (Box::new(ByzantineTolerant), f(66.67, 83.33, 1789.0)),
        (
            Box::new(Hierarchical {
                tiers: vec![4, 2, 1],
            }),
            f(57.14, 71.43, 2156.0),
        ),
        (
            Box::new(Hierarchical {
                tiers: vec![16, 6, 2],
            }),
            f(57.14, 71.43, 2156.0),
        ),
        (Box::new(CrossDatacenter), f(30.36, 75.0, 3421.0)),
        (Box::new(SelfHealing), f(45.56, 80.0, 2987.0)),
        (
            Box::new(FederatedHierarchical::small()),
            f(57.14, 71.43, 2156.0),
        ),
        (
            Box::new(FederatedHierarchical::enterprise()),
            f(57.14, 71.43, 2156.0),
        ),
        (Box::new(FederatedCrossDatacenter), f(30.36, 75.0, 3421.0)),
    ]
}
