//! One shutdown signal per process.
//!
//! [`on_signal`] returns a `CancellationToken` that SIGTERM or Ctrl-C (SIGINT) cancels. Every
//! long-lived task takes a clone (or a child) and stops when it is cancelled; HTTP servers stop
//! accepting and drain their connections under a deadline (see [`crate::http`]).

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How long HTTP connections may take to finish after shutdown starts.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C); which one is logged.
///
/// The handlers are installed before this returns, so a signal that arrives afterwards is never
/// lost (nor does it kill the process). Call it inside a tokio runtime, once.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT (Ctrl-C)",
        };
        tracing::info!("{name} received: shutting down");
        cancel.cancel();
    });
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = on_signal().unwrap();
        assert!(!token.is_cancelled());
        let status =
            std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status().unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(5), token.cancelled()).await.expect("SIGTERM cancels the token");
    }
}
