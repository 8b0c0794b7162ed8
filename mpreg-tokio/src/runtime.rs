//! The executor seam: what the drive loop, the connections' plumbing and the
//! client need from an async runtime — run the node's thread, spawn tasks
//! (on that thread, anywhere, and blocking work on a pool) and a timer.
//! Everything else is written once against this trait (quinn's driver is
//! the model); the channels are `tokio::sync`'s, which run on any executor.
//!
//! A [`Transport`](crate::Transport) names the runtime its sockets belong
//! to, so starting a node over a transport picks its executor too.

use futures_util::future::{AbortHandle, Abortable, Either, select};
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

/// An async executor the drive loop can run on.
pub trait Runtime: Send + Sync + 'static {
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

/// The tokio runtime: a node's thread runs a current-thread runtime with a
/// `LocalSet`; blocking handlers go to its blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn run_local(fut: impl Future<Output = ()> + 'static) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, fut);
        drop(local);
        rt.shutdown_background();
        Ok(())
    }

    fn spawn_local(fut: impl Future<Output = ()> + 'static) {
        tokio::task::spawn_local(fut);
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(fut);
    }

    fn spawn_blocking(f: impl FnOnce() + Send + 'static) {
        tokio::task::spawn_blocking(f);
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(deadline.into())
    }
}

/// A spawned task that can be stopped; dropping the handle leaves it
/// running.
#[derive(Debug)]
pub(crate) struct Task(AbortHandle);

impl Task {
    /// Stops the task at its next poll (its future is dropped).
    pub(crate) fn abort(&self) {
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
pub(crate) fn spawn_local<R: Runtime>(fut: impl Future<Output = ()> + 'static) -> Task {
    let (task, fut) = abortable(fut);
    R::spawn_local(fut);
    task
}

/// Spawns `fut` on the caller's executor.
pub(crate) fn spawn<R: Runtime>(fut: impl Future<Output = ()> + Send + 'static) -> Task {
    let (task, fut) = abortable(fut);
    R::spawn(fut);
    task
}

/// `fut`'s output, or `None` if `limit` passed first.
pub(crate) fn timeout<R: Runtime, F: Future>(
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

/// A runtime's timer behind a function pointer, for handles that are not
/// generic over their runtime (a [`Client`](crate::Client)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer(fn(Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>);

impl Timer {
    pub(crate) fn of<R: Runtime>() -> Timer {
        Timer(|deadline| Box::pin(R::sleep_until(deadline)))
    }

    /// `fut`'s output, or `None` if `limit` passed first.
    pub(crate) fn timeout<F: Future>(
        self,
        limit: Duration,
        fut: F,
    ) -> impl Future<Output = Option<F::Output>> {
        race(fut, (self.0)(Instant::now() + limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn an_aborted_task_never_finishes_a_detached_one_does_and_timeouts_elapse() {
        let (aborted, kept) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, k) = (aborted.clone(), kept.clone());
        Tokio::run_local(async move {
            let soon = || Tokio::sleep_until(Instant::now() + Duration::from_millis(20));
            let t = spawn_local::<Tokio>(async move {
                soon().await;
                a.store(true, Ordering::SeqCst);
            });
            drop(spawn_local::<Tokio>(async move {
                soon().await;
                k.store(true, Ordering::SeqCst);
            }));
            t.abort();
            let slow = Tokio::sleep_until(Instant::now() + Duration::from_secs(5));
            assert_eq!(
                timeout::<Tokio, _>(Duration::from_millis(100), slow).await,
                None
            );
            assert_eq!(
                timeout::<Tokio, _>(Duration::from_secs(5), async { 7 }).await,
                Some(7)
            );
        })
        .unwrap();
        assert!(!aborted.load(Ordering::SeqCst), "the aborted task ran on");
        assert!(kept.load(Ordering::SeqCst), "the detached task was stopped");
    }
}
