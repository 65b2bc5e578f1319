//! Shutdown as a small type of its own: one place listens for SIGTERM and SIGINT, everyone else
//! asks whether to stop or waits for it.

use tokio_util::sync::CancellationToken;

/// A cloneable handle that says whether the daemon is stopping.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A handle that is not triggered yet.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Starts stopping.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether stopping has started.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once stopping has started.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// Sleeps for `duration`, or less if stopping starts; returns false when interrupted.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.wait() => false,
        }
    }

    /// Triggers this handle on the first SIGTERM or SIGINT.
    pub fn listen_for_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight profiles, then stopping"),
                _ = int.recv() => tracing::info!("SIGINT: finishing in-flight profiles, then stopping"),
            }
            this.trigger();
        });
        Ok(())
    }
}
