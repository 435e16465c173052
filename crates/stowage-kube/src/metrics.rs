//! Prometheus metrics, served in the text exposition format on `--metrics-address`
//! (`GET /metrics`). The node agent's: work items by kind and outcome, bytes copied, how long
//! items took, and what is running or queued now, each labelled with the node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// Which kind of work item.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Kind {
    /// A VolumeBackup.
    Backup,
    /// A VolumeRestore.
    Restore,
}

/// How an item ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Completed.
    Completed,
    /// Failed.
    Failed,
    /// Canceled.
    Canceled,
}

impl EncodeLabelValue for Kind {
    fn encode(&self, w: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        w.write_str(match self {
            Kind::Backup => "backup",
            Kind::Restore => "restore",
        })
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, w: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        w.write_str(match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Canceled => "canceled",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    node: String,
    kind: Kind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    node: String,
    kind: Kind,
    outcome: Outcome,
}

fn duration_histogram() -> Histogram {
    // 1 s to about 9 hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// The node agent's metrics.
pub struct AgentMetrics {
    node: String,
    registry: Registry,
    items: Family<OutcomeLabels, Counter>,
    bytes: Family<KindLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    running: Family<KindLabels, Gauge>,
    queued: Family<KindLabels, Gauge>,
}

impl AgentMetrics {
    /// The metrics of the agent of `node`, all at zero.
    pub fn new(node: &str) -> AgentMetrics {
        let mut registry = Registry::with_prefix("stowage_agent");
        let items = Family::<OutcomeLabels, Counter>::default();
        let bytes = Family::<KindLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let running = Family::<KindLabels, Gauge>::default();
        let queued = Family::<KindLabels, Gauge>::default();
        registry.register(
            "volume_items",
            "Volume work items ended, by kind and outcome",
            items.clone(),
        );
        registry.register(
            "volume_bytes",
            "Bytes of volume data backed up or restored",
            bytes.clone(),
        );
        registry.register(
            "volume_duration_seconds",
            "How long a volume took, from taking the item to its end",
            durations.clone(),
        );
        registry.register(
            "volumes_running",
            "Volumes being copied now",
            running.clone(),
        );
        registry.register(
            "volumes_queued",
            "Volumes taken and waiting for a slot",
            queued.clone(),
        );
        let m = AgentMetrics {
            node: node.to_string(),
            registry,
            items,
            bytes,
            durations,
            running,
            queued,
        };
        // Every series exists from the start, so a rate over a fresh agent is 0, not absent.
        for kind in [Kind::Backup, Kind::Restore] {
            for outcome in [Outcome::Completed, Outcome::Failed, Outcome::Canceled] {
                drop(m.items.get_or_create(&m.outcome(kind, outcome)));
            }
            drop(m.bytes.get_or_create(&m.kind(kind)));
            drop(m.running.get_or_create(&m.kind(kind)));
            drop(m.queued.get_or_create(&m.kind(kind)));
        }
        m
    }

    fn kind(&self, kind: Kind) -> KindLabels {
        KindLabels {
            node: self.node.clone(),
            kind,
        }
    }

    fn outcome(&self, kind: Kind, outcome: Outcome) -> OutcomeLabels {
        OutcomeLabels {
            node: self.node.clone(),
            kind,
            outcome,
        }
    }

    /// An item was taken and waits for a slot.
    pub fn queued(&self, kind: Kind) {
        self.queued.get_or_create(&self.kind(kind)).inc();
    }

    /// A queued item got its slot.
    pub fn started(&self, kind: Kind) {
        self.queued.get_or_create(&self.kind(kind)).dec();
        self.running.get_or_create(&self.kind(kind)).inc();
    }

    /// A queued item was canceled before it got a slot.
    pub fn dequeued(&self, kind: Kind) {
        self.queued.get_or_create(&self.kind(kind)).dec();
    }

    /// A running item ended.
    pub fn ended(&self, kind: Kind, outcome: Outcome, bytes: u64, took: Duration) {
        self.running.get_or_create(&self.kind(kind)).dec();
        self.items.get_or_create(&self.outcome(kind, outcome)).inc();
        self.bytes.get_or_create(&self.kind(kind)).inc_by(bytes);
        self.durations
            .get_or_create(&self.kind(kind))
            .observe(took.as_secs_f64());
    }

    /// The metrics in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics address {0}: {1}")]
pub struct MetricsError(SocketAddr, #[source] std::io::Error);

/// Serves `GET /metrics` on `addr` until the process ends; binds before returning, so a busy
/// address is an error at start-up. Returns the address bound (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> Result<SocketAddr, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| MetricsError(addr, e))?;
    let bound = listener.local_addr().map_err(|e| MetricsError(addr, e))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let render = render.clone();
                        async move {
                            let response =
                                if req.uri().path() == "/metrics" {
                                    Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(render())))
                                } else {
                                    Response::builder().status(404).body(Full::new(
                                        Bytes::from_static(b"not found; try /metrics\n"),
                                    ))
                                };
                            Ok::<_, std::convert::Infallible>(response.expect("a valid response"))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start_and_counts() {
        let m = AgentMetrics::new("node-0");
        let text = m.encode();
        assert!(text.contains(
            r#"stowage_agent_volume_items_total{node="node-0",kind="backup",outcome="failed"} 0"#
        ), "{text}");
        m.queued(Kind::Backup);
        m.started(Kind::Backup);
        m.ended(
            Kind::Backup,
            Outcome::Completed,
            1000,
            Duration::from_secs(3),
        );
        let text = m.encode();
        assert!(text.contains(
            r#"stowage_agent_volume_items_total{node="node-0",kind="backup",outcome="completed"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"stowage_agent_volume_bytes_total{node="node-0",kind="backup"} 1000"#)
        );
        assert!(text.contains(r#"stowage_agent_volumes_running{node="node-0",kind="backup"} 0"#));
        assert!(text.contains(
            r#"stowage_agent_volume_duration_seconds_count{node="node-0",kind="backup"} 1"#
        ));
    }
}
