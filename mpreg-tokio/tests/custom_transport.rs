//! The drive loop and the API only need the `Transport` trait: here a
//! minimal transport (length-prefixed messages over plain TCP, `tcp://`)
//! runs a cluster and a client with no other change. A QUIC transport plugs
//! in the same way.

use bytes::Bytes;
use mpreg_tokio::transport::{Listener, MessageSink, MessageStream, Transport};
use mpreg_tokio::{Addr, Client, MemberState, Node, Settings};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
struct LenTcp;

struct LenListener(TcpListener);
struct LenSink(BufWriter<OwnedWriteHalf>);
struct LenStream(OwnedReadHalf, usize);

fn halves(tcp: TcpStream, max: usize) -> io::Result<(LenSink, LenStream)> {
    tcp.set_nodelay(true)?;
    let (r, w) = tcp.into_split();
    Ok((LenSink(BufWriter::new(w)), LenStream(r, max)))
}

impl Transport for LenTcp {
    type Runtime = mpreg_tokio::Tokio;
    type Sink = LenSink;
    type Stream = LenStream;
    type Listener = LenListener;
    type Accepting = TcpStream;

    fn scheme(&self) -> &'static str {
        "tcp"
    }

    async fn bind(&self, host: &str, port: u16) -> io::Result<LenListener> {
        Ok(LenListener(TcpListener::bind((host, port)).await?))
    }

    async fn dial(&self, addr: &Addr, max: usize) -> io::Result<(LenSink, LenStream)> {
        let auth = addr
            .as_str()
            .strip_prefix("tcp://")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not tcp://"))?;
        halves(TcpStream::connect(auth).await?, max)
    }

    async fn handshake(&self, tcp: TcpStream, max: usize) -> io::Result<(LenSink, LenStream)> {
        halves(tcp, max)
    }
}

impl Listener for LenListener {
    type Accepting = TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }
}

impl MessageSink for LenSink {
    async fn feed(&mut self, m: Bytes) -> io::Result<()> {
        let len = u32::try_from(m.len()).map_err(io::Error::other)?;
        self.0.write_all(&len.to_be_bytes()).await?;
        self.0.write_all(&m).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.0.flush().await?;
        self.0.shutdown().await
    }
}

impl MessageStream for LenStream {
    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.0.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        let mut buf = vec![0u8; len];
        self.0.read_exact(&mut buf).await?;
        Ok(Some(Bytes::from(buf)))
    }
}

#[tokio::test]
async fn a_cluster_and_a_client_run_over_another_transport() {
    let a = Node::start_with(LenTcp, Settings::local()).await.unwrap();
    assert!(a.addr().as_str().starts_with("tcp://127.0.0.1:"));
    let b = Node::start_with(
        LenTcp,
        Settings {
            seeds: vec![a.addr().clone()],
            ..Settings::local()
        },
    )
    .await
    .unwrap();
    b.register("triple", ["b"], |(x,): (i64,)| async move {
        Ok::<_, String>(3 * x)
    })
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let ms = a.members().await.unwrap();
        let ready = ms.iter().filter(|m| m.state == MemberState::Alive).count() == 2
            && a.catalog()
                .await
                .unwrap()
                .iter()
                .any(|e| e.name == "triple");
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no cluster over tcp://"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r: i64 = a
        .call("triple", &(7,))
        .locs(["b"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 21);
    let c = Client::connect_with(LenTcp, a.addr().as_str(), Duration::from_secs(5))
        .await
        .unwrap();
    let r: i64 = c
        .call("triple", &(5,))
        .locs(["b"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 15);
    // Seeds of another transport's scheme are refused at start, by name.
    let wrong = Node::start_with(
        LenTcp,
        Settings {
            seeds: vec![Addr::new("ws://127.0.0.1:9")],
            ..Settings::local()
        },
    )
    .await
    .unwrap_err();
    assert!(wrong.to_string().contains("seeds"), "{wrong}");
    b.leave().await;
    a.leave().await;
}
