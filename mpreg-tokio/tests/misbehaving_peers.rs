//! Raw WebSocket peers that misbehave: one stops reading, one sends a
//! frame above the limit. The node drops or skips them and keeps serving
//! the cluster.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mpreg_proto::chunk::chunks;
use mpreg_proto::wire::{Query, QueryAnswer};
use mpreg_proto::{Call, ClientConn, ClientEvent, TrafficClass};
use mpreg_testkit::eventually;
use mpreg_tokio::{Event, FunctionSpec, Node, Settings};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

async fn pair(a: Settings) -> (Node, Node) {
    let a = Node::start(a).await.unwrap();
    let b = Node::start(Settings {
        seeds: vec![a.addr().clone()],
        ..Settings::local()
    })
    .await
    .unwrap();
    a.register_spec(
        FunctionSpec::new("on-a").resources(["a"]),
        |(x,): (u64,)| async move { Ok::<_, String>(x) },
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "b knows a's function", || async {
        b.catalog().await.unwrap().iter().any(|e| e.name == "on-a")
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn a_peer_that_stops_reading_fills_only_its_own_queue() {
    let mut s = Settings::local();
    s.runtime.queue_call_bytes = 256 * 1024;
    let (a, b) = pair(s).await;
    let mut b_events = b.events();

    // A client that floods `a` with 1 MiB echo calls and never reads.
    let (ws, _) = tokio_tungstenite::connect_async(a.addr().as_str())
        .await
        .unwrap();
    let (mut tx, _rx_never_read) = ws.split();
    let flood = tokio::spawn(async move {
        let mut conn = ClientConn::new(None, 16 << 20);
        let mut frames = vec![(TrafficClass::Control, Bytes::from(conn.hello()))];
        let args = serde_json::to_vec(&("x".repeat(1 << 20),)).unwrap();
        for _ in 0..256 {
            let (_, f) = conn.call(&Call::new("echo").args(args.clone()));
            frames.push((TrafficClass::Call, Bytes::from(f)));
        }
        for (class, f) in frames {
            for c in chunks(class, f) {
                if tx.send(Message::Binary(c)).await.is_err() {
                    return;
                }
            }
        }
    });

    // Meanwhile b's calls to a stay fast, and a is never suspected.
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        i += 1;
        let t = Instant::now();
        let r: u64 = b
            .call("on-a", &(i,))
            .locs(["a"])
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r, i);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a call took {:?}",
            t.elapsed()
        );
        if a.stats().await.unwrap().queue_overflows >= 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stalled peer was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), flood).await;
    while let Some(o) = b_events.try_next() {
        assert_ne!(o.event, Event::MemberSuspect { id: a.id() });
    }
    assert_eq!(b.stats().await.unwrap().live_members, 2);
}

#[tokio::test]
async fn an_oversized_frame_is_skipped_and_the_connection_keeps_working() {
    let mut s = Settings::local();
    s.protocol.limits.max_frame_size = 1 << 20;
    s.protocol.dissemination.sync_page_bytes = 64 << 10;
    let a = Node::start(s).await.unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(a.addr().as_str())
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let mut conn = ClientConn::new(None, 16 << 20);
    let junk = Bytes::from(vec![0xAB; (1 << 20) + 1]);
    for c in chunks(TrafficClass::Call, junk) {
        tx.send(Message::Binary(c)).await.unwrap();
    }
    for c in chunks(TrafficClass::Control, Bytes::from(conn.hello())) {
        tx.send(Message::Binary(c)).await.unwrap();
    }
    let (token, q) = conn.query(Query::Members);
    for c in chunks(TrafficClass::Call, Bytes::from(q)) {
        tx.send(Message::Binary(c)).await.unwrap();
    }
    // Replies are small: each is one chunk with a 5-byte header.
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(Message::Binary(m))) = rx.next().await {
            if let Ok(Some(ClientEvent::Answer { token: t, answer })) = conn.handle_frame(&m[5..]) {
                assert_eq!(t, token);
                return answer;
            }
        }
        panic!("the connection closed");
    })
    .await
    .expect("an answer");
    assert!(matches!(answer, QueryAnswer::Members(m) if m.len() == 1));
    assert_eq!(a.stats().await.unwrap().frames_too_large, 1);
}
