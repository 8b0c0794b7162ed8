//! Embedding the sans-IO core in a runtime of your own: no async, no
//! tokio — one `std::thread` per node and a `std::net::UdpSocket`, driven
//! by the run-loop contract in the crate docs. Three nodes on 127.0.0.1
//! form a cluster; node 2 serves `double`, node 0 calls it.
//!
//! ```text
//! cargo run -p mpreg-proto --example udp_cluster
//! ```
//!
//! UDP has no connections, so each peer socket is one "connection" whose
//! id is its port (every node here binds 127.0.0.1): a dial is answered at
//! once with it, a datagram from a new port is an accepted connection.
//! Every rule — whom to talk to, when to give up, how to leave — is the
//! core's.

use bytes::Bytes;
use mpreg_proto::{
    Addr, Call, CallError, Closed, Config, ConnId, Event, FunctionSpec, Identity, Keypair, Node,
    Order, Time,
};
use std::error::Error;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

type Outcome = Result<Bytes, CallError>;

/// The monotonic clock every input is stamped with.
fn now(epoch: Instant) -> Time {
    Time::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
}

/// A peer socket's connection id (its port), and back.
fn conn_of(a: SocketAddr) -> ConnId {
    ConnId(a.port().into())
}

fn socket_of(c: ConnId) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], c.0 as u16))
}

/// One node's thread: wait for a datagram or the next deadline, feed the
/// core, then carry out what it ordered.
fn run(
    mut node: Node,
    sock: UdpSocket,
    epoch: Instant,
    caller: bool,
    done: mpsc::Sender<Outcome>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let (mut buf, mut called) = (vec![0u8; 65_536], false);
    loop {
        if stop.load(Ordering::Relaxed) && node.status() == mpreg_proto::Status::Active {
            node.leave(now(epoch)); // drains, says `Left`, closes, then Stop
        }
        // Rule 2: sleep until the next deadline (bounded, to notice `stop`).
        let t = now(epoch);
        let wait = node
            .poll_timeout()
            .map_or(Duration::from_millis(50), |d| d.saturating_since(t))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        sock.set_read_timeout(Some(wait))?;
        match sock.recv_from(&mut buf) {
            // Frames in, on the sender's connection.
            Ok((n, from)) => {
                // The core ignores an accept of a connection it knows.
                node.handle_accepted(now(epoch), conn_of(from));
                // A rejected frame changes nothing.
                let _ = node.handle_frame(now(epoch), conn_of(from), &buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        let t = now(epoch);
        if node.poll_timeout().is_some_and(|d| t >= d) {
            node.handle_timeout(t);
        }
        // Rule 1: carry out every order, then read every event.
        loop {
            if let Some(order) = node.poll_order() {
                match order {
                    Order::Dial(addr) => match addr.url().and_then(|u| u.authority.parse().ok()) {
                        Some(to) => node.handle_dialed(t, &addr, conn_of(to)),
                        None => node.handle_dial_failed(t, &addr),
                    },
                    Order::Send(tx) => {
                        if sock.send_to(&tx.frame, socket_of(tx.conn)).is_err() {
                            node.handle_closed(t, tx.conn, Closed::Lost);
                        }
                    }
                    Order::Close(conn) | Order::Abort(conn) => {
                        node.handle_closed(t, conn, Closed::Clean);
                    }
                    // Run the handler (quick here, so inline).
                    Order::Invoke(inv) => {
                        let result = std::str::from_utf8(&inv.args)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                            .map(|n| Bytes::from((2 * n).to_string()))
                            .ok_or_else(|| "double takes an integer".to_string());
                        let _ = node.complete_invocation(t, inv.id, result);
                    }
                    Order::Cancel(_) => {}
                    Order::Stop => return Ok(()),
                }
                continue;
            }
            let Some(event) = node.poll_event() else {
                break;
            };
            match event {
                Event::MemberUp { addr, .. } => println!("{}: {addr} is up", node.addr()),
                Event::FunctionAdded { name, .. } if caller && !called && name == "double" => {
                    called = true;
                    let call = Call::new("double").locs(["cpu"]).args("21");
                    if let Err(e) = node.call(t, call) {
                        let _ = done.send(Err(e));
                    }
                }
                Event::CallDone { result, .. } => {
                    let _ = done.send(result);
                }
                _ => {}
            }
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let epoch = Instant::now();
    let sockets: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<Addr> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| Addr::new(format!("udp://{a}"))))
        .collect::<Result<_, _>>()?;
    let (done_tx, done_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let mut config = Config {
            name: format!("udp-{i}"),
            rng_seed: 7 + i as u64,
            ..Config::default()
        };
        // Every frame must fit in one datagram.
        config.limits.max_frame_size = 60_000;
        config.connections.max_held_bytes = 60_000;
        config.dissemination.sync_page_bytes = 16 * 1024;
        // A real node draws its key seed from the OS and keeps it in a file.
        let key = Keypair::from_seed([1 + i as u8; 32]);
        let identity = Identity::new(key, addrs[i].clone(), 1);
        let mut node = Node::new(config, identity, now(epoch))?;
        if i == 2 {
            node.register(now(epoch), FunctionSpec::new("double").resources(["cpu"]))?;
        }
        if i > 0 {
            node.join(now(epoch), [addrs[i - 1].clone()]); // a chain of seeds
        }
        let (done, stop) = (done_tx.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            run(node, sock, epoch, i == 0, done, stop)
        }));
    }
    let outcome = done_rx.recv_timeout(Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "a node thread panicked")??;
    }
    match outcome {
        Ok(Ok(v)) if v == "42" => {
            println!(
                "udp-0 called double(21) on udp-2: {}",
                String::from_utf8_lossy(&v)
            );
            println!("ok in {:.0} ms", epoch.elapsed().as_secs_f64() * 1e3);
            Ok(())
        }
        Ok(other) => Err(format!("unexpected outcome: {other:?}").into()),
        Err(_) => Err("no call outcome within 20 s".into()),
    }
}
