//! A client-side request rate limit (Velero's `--client-qps`), shared by everything one run
//! sends to the API server.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Spaces requests at most `qps` per second apart; with no rate, lets them all go.
#[derive(Debug)]
pub struct Pacer {
    qps: Option<f64>,
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `qps` requests per second (`None` or not positive: no limit).
    pub fn new(qps: Option<f64>) -> Self {
        Pacer {
            qps: qps.filter(|q| *q > 0.0),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until the next request may go.
    pub async fn wait(&self) {
        let Some(qps) = self.qps else { return };
        let at = {
            let mut next = self.next.lock().unwrap();
            let at = (*next).max(Instant::now());
            *next = at + Duration::from_secs_f64(1.0 / qps);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}
