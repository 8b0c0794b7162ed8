//! Helpers for tests that run `mpreg` processes on loopback.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub use mpreg_testkit::{alive_count as alive, eventually, state_of};
use mpreg_tokio::NodeId;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mpreg");

/// A command for the `mpreg` binary with no `MPREG_*` variable inherited.
pub fn mpreg() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("MPREG_") {
            c.env_remove(k);
        }
    }
    c
}

/// A running `mpreg server start`; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    /// The `MPREG_*=` lines it printed on start.
    pub printed: HashMap<String, String>,
    pub url: String,
    pub id: NodeId,
}

impl Server {
    /// Starts a server with extra arguments and environment; waits for its
    /// start-up lines.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = mpreg();
        cmd.args(["server", "start"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mpreg runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut printed = HashMap::new();
        while !printed.contains_key("MPREG_DETECTION_BOUND_10") {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("server {args:?} printed no start-up lines"));
            if let Some((k, v)) = line.split_once('=') {
                printed.insert(k.to_string(), v.to_string());
            }
        }
        let url = printed["MPREG_URL"].clone();
        let id = printed["MPREG_NODE_ID"].parse().expect("a node id");
        Server {
            child,
            printed,
            url,
            id,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit status once the process ends.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait works") {
                return s;
            }
            assert!(
                start.elapsed() < within,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mpreg` to completion.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = mpreg();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("mpreg runs")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
