//! # mpreg-testkit — what the real-socket tests share
//!
//! Tests over real sockets never sleep for a fixed time and assume: they
//! poll an observable condition until a deadline ([`eventually`]). The
//! sans-IO core has its own drivers for tests (`mpreg_proto::testing`);
//! this crate is for tests of the runtimes, the CLI and the conformance
//! suite.
//!
//! ```no_run
//! # async fn demo(a: mpreg_tokio::Node, b: mpreg_tokio::Node) {
//! use mpreg_testkit::{alive_count, eventually};
//! use std::time::Duration;
//!
//! eventually(Duration::from_secs(5), "b sees both", || async { alive_count(&b).await == 2 }).await;
//! # }
//! ```

use mpreg_drive::{Client, MemberState, MemberView, Node, NodeId, Runtime};
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] checks.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every [`POLL`] until it holds and returns how long that
/// took; panics, naming `what`, if it does not hold `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Where a node or a client reads member tables from.
pub trait Members {
    /// The member table (empty if it cannot be read).
    fn member_table(&self) -> impl Future<Output = Vec<MemberView>>;
}

impl<Rt> Members for Node<Rt> {
    async fn member_table(&self) -> Vec<MemberView> {
        self.members().await.unwrap_or_default()
    }
}

impl<Rt: Runtime> Members for Client<Rt> {
    async fn member_table(&self) -> Vec<MemberView> {
        self.members().await.unwrap_or_default()
    }
}

/// The state of member `id` as `n` sees it.
pub async fn state_of(n: &impl Members, id: NodeId) -> Option<MemberState> {
    n.member_table()
        .await
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| m.state)
}

/// How many members `n` sees Alive (itself included).
pub async fn alive_count(n: &impl Members) -> usize {
    n.member_table()
        .await
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}
