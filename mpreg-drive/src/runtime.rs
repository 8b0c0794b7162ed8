//! The executor seam: what the drive loop, the connections' plumbing and the
//! client need from an async runtime — run the node's thread, spawn tasks
//! (on that thread, anywhere, and blocking work on a pool) and a timer.
//! Everything else is written once against this trait (quinn's driver is
//! the model); the channels are `tokio::sync`'s, which run on any executor.
//!
//! A [`Transport`] names the runtime its sockets belong
//! to, so starting a node over a transport picks its executor too.

use crate::transport::Transport;
use futures_util::future::{AbortHandle, Abortable, Either, select};
use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

/// An async executor the drive loop can run on.
pub trait Runtime: Send + Sync + 'static {
    /// Its name in settings and reports (`"tokio"`, `"async-std"`).
    const NAME: &'static str;

    /// Runs `fut` to its end on the calling thread (a node's own thread),
    /// with [`spawn_local`](Runtime::spawn_local) available inside it.
    fn run_local(fut: impl Future<Output = ()> + 'static) -> io::Result<()>;

    /// Spawns a task on the current [`run_local`](Runtime::run_local)
    /// thread.
    fn spawn_local(fut: impl Future<Output = ()> + 'static);

    /// Spawns a task on the executor the caller runs on (a client's tasks).
    fn spawn(fut: impl Future<Output = ()> + Send + 'static);

    /// Runs blocking work on a thread pool.
    fn spawn_blocking(f: impl FnOnce() + Send + 'static);

    /// Completes at `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send + 'static;
}

/// A runtime with a transport of its own, which [`Node::start`] and
/// [`Client::connect`] use (WebSocket for the tokio and async-std
/// adapters).
///
/// [`Node::start`]: crate::Node::start
/// [`Client::connect`]: crate::Client::connect
pub trait DefaultTransport: Runtime {
    /// The transport.
    type Transport: Transport<Runtime = Self> + Default;
}

/// A spawned task that can be stopped; dropping the handle leaves it
/// running.
#[derive(Debug)]
pub struct Task(AbortHandle);

impl Task {
    /// Stops the task at its next poll (its future is dropped).
    pub fn abort(&self) {
        self.0.abort();
    }
}

fn abortable<F: Future<Output = ()>>(fut: F) -> (Task, impl Future<Output = ()>) {
    let (handle, registration) = AbortHandle::new_pair();
    (Task(handle), async move {
        let _ = Abortable::new(fut, registration).await;
    })
}

/// Spawns `fut` on the node's thread.
pub fn spawn_local<R: Runtime>(fut: impl Future<Output = ()> + 'static) -> Task {
    let (task, fut) = abortable(fut);
    R::spawn_local(fut);
    task
}

/// Spawns `fut` on the caller's executor.
pub fn spawn<R: Runtime>(fut: impl Future<Output = ()> + Send + 'static) -> Task {
    let (task, fut) = abortable(fut);
    R::spawn(fut);
    task
}

/// `fut`'s output, or `None` if `limit` passed first.
pub fn timeout<R: Runtime, F: Future>(
    limit: Duration,
    fut: F,
) -> impl Future<Output = Option<F::Output>> {
    race(fut, R::sleep_until(Instant::now() + limit))
}

async fn race<F: Future>(fut: F, sleep: impl Future<Output = ()>) -> Option<F::Output> {
    match select(pin!(fut), pin!(sleep)).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// The executor of a [`Node`](crate::Node) whose executor is not named:
/// one handle type for nodes of any executor (see
/// [`Node::erase`](crate::Node::erase)).
#[derive(Debug)]
pub enum AnyRuntime {}
