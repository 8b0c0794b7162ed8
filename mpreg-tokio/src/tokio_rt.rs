//! The tokio [`Runtime`]: a node's thread runs a current-thread runtime.

use mpreg_drive::runtime::{DefaultTransport, Runtime};
use std::future::Future;
use std::io;
use std::time::Instant;

/// The tokio runtime: a node's thread runs a current-thread runtime with a
/// `LocalSet`; blocking handlers go to its blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";

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

impl DefaultTransport for Tokio {
    type Transport = crate::WsTransport;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpreg_drive::runtime;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn an_aborted_task_never_finishes_a_detached_one_does_and_timeouts_elapse() {
        let (aborted, kept) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, k) = (aborted.clone(), kept.clone());
        Tokio::run_local(async move {
            let soon = || Tokio::sleep_until(Instant::now() + Duration::from_millis(20));
            let t = runtime::spawn_local::<Tokio>(async move {
                soon().await;
                a.store(true, Ordering::SeqCst);
            });
            drop(runtime::spawn_local::<Tokio>(async move {
                soon().await;
                k.store(true, Ordering::SeqCst);
            }));
            t.abort();
            let slow = Tokio::sleep_until(Instant::now() + Duration::from_secs(5));
            assert_eq!(
                runtime::timeout::<Tokio, _>(Duration::from_millis(100), slow).await,
                None
            );
            assert_eq!(
                runtime::timeout::<Tokio, _>(Duration::from_secs(5), async { 7 }).await,
                Some(7)
            );
        })
        .unwrap();
        assert!(!aborted.load(Ordering::SeqCst), "the aborted task ran on");
        assert!(kept.load(Ordering::SeqCst), "the detached task was stopped");
    }
}
