//! A client connection: not a cluster member. It calls functions and reads
//! views through one node, which routes its calls. Sans-IO like the rest:
//! it builds frames and reads them; the runtime carries them.
//!
//! A client that does not know the cluster id sends the wildcard tag
//! ([`ANY_CLUSTER`](crate::wire::ANY_CLUSTER)), which nodes accept on client
//! messages only.

use crate::error::CallError;
use crate::id::{Addr, NodeId};
use crate::multistep::{self, Command, ManyError, References, RequestError, Results};
use crate::node::Call;
use crate::wire::{
    self, ClientCall, ClientMany, DecodeError, Hello, Message, Query, QueryAnswer, Role,
};
use bytes::Bytes;

/// What a node sent to a client.
#[derive(Clone, PartialEq, Debug)]
pub enum ClientEvent {
    /// The node's `Hello`: who serves this connection.
    Hello {
        /// The node.
        node: NodeId,
        /// Its cluster id.
        cluster_id: String,
    },
    /// The outcome of a call.
    Reply {
        /// The token [`ClientConn::call`] returned.
        token: u64,
        /// The outcome.
        result: Result<Bytes, CallError>,
    },
    /// The outcome of a multi-step call.
    ManyReply {
        /// The token [`ClientConn::call_many`] returned.
        token: u64,
        /// Every command's result by name, or why not.
        result: Result<Results, ManyError>,
    },
    /// A view.
    Answer {
        /// The token [`ClientConn::query`] returned.
        token: u64,
        /// The view.
        answer: QueryAnswer,
    },
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct ClientConn {
    cluster: u16,
    next_token: u64,
    max_frame: usize,
}

impl ClientConn {
    /// A client of `cluster_id`, or of whatever cluster the node is in.
    pub fn new(cluster_id: Option<&str>, max_frame: usize) -> ClientConn {
        ClientConn {
            cluster: cluster_id.map_or(wire::ANY_CLUSTER, wire::cluster_tag),
            next_token: 0,
            max_frame,
        }
    }

    /// The first frame on the connection.
    pub fn hello(&self) -> Vec<u8> {
        let h = Hello {
            node: NodeId::default(),
            incarnation: 0,
            addr: Addr::default(),
            min_version: wire::MIN_PROTOCOL_VERSION,
            max_version: wire::PROTOCOL_VERSION,
            cluster_id: Default::default(),
            role: Role::Client,
        };
        wire::encode(&Message::Hello(h), wire::MIN_PROTOCOL_VERSION, self.cluster)
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// A call frame and the token its reply will carry.
    pub fn call(&mut self, call: &Call) -> (u64, Vec<u8>) {
        let token = self.token();
        let msg = Message::ClientCall(ClientCall {
            token,
            function: call.function.clone(),
            version_req: call.version_req.clone(),
            locs: call.locs.clone(),
            args: call.args.clone(),
            budget_us: call.timeout.map_or(0, |t| t.as_micros() as u64),
            target_cluster: call.target_cluster.clone(),
        });
        (
            token,
            wire::encode(&msg, wire::MIN_PROTOCOL_VERSION, self.cluster),
        )
    }

    /// A multi-step call's frame and the token its reply will carry.
    pub fn call_many(&mut self, req: &multistep::Request) -> (u64, Vec<u8>) {
        let token = self.token();
        let msg = Message::ClientMany(ClientMany {
            token,
            commands: Command::list_to_json(&req.commands).into(),
            explicit: req.references() == References::Explicit,
            budget_us: req.timeout.map_or(0, |t| t.as_micros() as u64),
        });
        (
            token,
            wire::encode(&msg, wire::MIN_PROTOCOL_VERSION, self.cluster),
        )
    }

    /// A query frame and its token.
    pub fn query(&mut self, q: Query) -> (u64, Vec<u8>) {
        let token = self.token();
        let msg = Message::ClientQuery((token, q));
        (
            token,
            wire::encode(&msg, wire::MIN_PROTOCOL_VERSION, self.cluster),
        )
    }

    /// Reads a frame from the node; `Ok(None)` for messages a client
    /// ignores.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<Option<ClientEvent>, DecodeError> {
        let (_, msg) = wire::decode(frame, self.max_frame, None)?;
        Ok(match msg {
            Message::Hello(h) => Some(ClientEvent::Hello {
                node: h.node,
                cluster_id: h.cluster_id.to_string(),
            }),
            Message::ClientReply(r) => Some(ClientEvent::Reply {
                token: r.token,
                result: r.result,
            }),
            Message::ClientManyReply(r) => Some(ClientEvent::ManyReply {
                token: r.token,
                result: r.result.and_then(|json| {
                    serde_json::from_slice(&json)
                        .map_err(|e| RequestError::Malformed(format!("the reply: {e}")).into())
                }),
            }),
            Message::ClientAnswer((token, answer)) => Some(ClientEvent::Answer { token, answer }),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Lone;
    use crate::{Config, FunctionSpec, Time};

    #[test]
    fn a_client_calls_through_a_node_without_knowing_the_cluster() {
        let cfg = Config {
            cluster_id: "prod".into(),
            ..Config::default()
        };
        let mut n = Lone::new(cfg, 1);
        n.node
            .register(Time::ZERO, FunctionSpec::new("echo"))
            .unwrap();
        let mut c = ClientConn::new(None, 1 << 20);
        let label = Addr::new("client");
        let conn = n.accept(&label);
        n.frame_on(conn, &c.hello()).unwrap();
        let (token, frame) = c.call(&Call::new("echo").args("hi"));
        n.frame_on(conn, &frame).unwrap();
        let inv = n.invocations.pop().unwrap();
        n.node
            .complete_invocation(n.now, inv.id, Ok(inv.args))
            .unwrap();
        n.drain();
        let got: Vec<ClientEvent> = n
            .sent
            .iter()
            .filter(|(a, _)| *a == label)
            .filter_map(|(_, f)| c.handle_frame(f).unwrap())
            .collect();
        assert!(
            matches!(&got[0], ClientEvent::Hello { cluster_id, .. } if cluster_id == "prod"),
            "{got:?}"
        );
        assert!(got.contains(&ClientEvent::Reply {
            token,
            result: Ok(Bytes::from("hi"))
        }));
        // Member-only messages from a client are refused.
        let gossip = wire::encode(&Message::Prune, 1, wire::ANY_CLUSTER);
        assert!(n.frame_on(conn, &gossip).is_err());
        n.sent.clear();
        let (_, q) = c.query(Query::Members);
        n.frame_on(conn, &q).unwrap();
        let answer = n
            .sent
            .iter()
            .find_map(|(_, f)| c.handle_frame(f).unwrap())
            .unwrap();
        assert!(
            matches!(answer, ClientEvent::Answer { answer: QueryAnswer::Members(m), .. } if m.len() == 1)
        );
        // A client that goes away takes nothing with it: no dial back.
        n.close(&label, crate::Closed::Lost);
        assert!(n.dials.is_empty());
    }

    #[test]
    fn a_client_runs_a_multi_step_call_and_hears_refusals_typed() {
        let mut n = Lone::new(Config::default(), 1);
        n.node
            .register(Time::ZERO, FunctionSpec::new("echo"))
            .unwrap();
        let mut c = ClientConn::new(None, 1 << 20);
        let label = Addr::new("client");
        let conn = n.accept(&label);
        n.frame_on(conn, &c.hello()).unwrap();
        let req = multistep::Request::new(vec![
            Command::new("a", "echo").arg("hi"),
            Command::new("b", "echo").arg("a"),
        ])
        .unwrap();
        let (token, frame) = c.call_many(&req);
        n.frame_on(conn, &frame).unwrap();
        for _ in 0..2 {
            let inv = n.invocations.pop().unwrap();
            n.node
                .complete_invocation(n.now, inv.id, Ok(inv.args))
                .unwrap();
            n.drain();
        }
        let replies = |n: &mut Lone, c: &mut ClientConn| -> Vec<ClientEvent> {
            let got = n
                .sent
                .iter()
                .filter_map(|(_, f)| c.handle_frame(f).unwrap())
                .filter(|e| matches!(e, ClientEvent::ManyReply { .. }))
                .collect();
            n.sent.clear();
            got
        };
        let want = Results::from([
            ("a".into(), serde_json::json!(["hi"])),
            ("b".into(), serde_json::json!([["hi"]])),
        ]);
        assert_eq!(
            replies(&mut n, &mut c),
            vec![ClientEvent::ManyReply {
                token,
                result: Ok(want)
            }]
        );
        // A request the node cannot take is refused with the typed error.
        let msg = Message::ClientMany(ClientMany {
            token: 9,
            commands: Bytes::from_static(br#"[{"name": "a", "fun": "echo", "args": ["a"]}]"#),
            explicit: false,
            budget_us: 0,
        });
        n.frame_on(conn, &wire::encode(&msg, 1, wire::ANY_CLUSTER))
            .unwrap();
        let cycle = RequestError::Cycle(vec!["a".into(), "a".into()]);
        assert_eq!(
            replies(&mut n, &mut c),
            vec![ClientEvent::ManyReply {
                token: 9,
                result: Err(cycle.into())
            }]
        );
    }
}
