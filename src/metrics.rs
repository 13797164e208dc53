//! Prometheus metrics, served on their own internal listener (`METRICS_PORT`,
//! 9601), never on the public port.
//!
//! Two sources: actix-web-prom's middleware on the public app (HTTP requests
//! by endpoint, method and status, plus process metrics), and the counters the
//! actors bump (`switchyard_actors::stats`), rendered at scrape time. Series
//! names follow Sockudo's (`sockudo_connected`, `sockudo_new_connections_total`,
//! …) with the configured prefix, so existing dashboards keep working.

use crate::apps::AppStore;
use crate::cluster::{BridgeStats, DropReason, LATENCY_BUCKETS};
use crate::http::shared_limits::RedisHealth;
use actix_web::{web, HttpResponse};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::{Encoder, Registry, TextEncoder};
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use switchyard_actors::app::App;
use switchyard_actors::stats::{self, AuthFailure, ConnectionError, RateLimit, Stats};

/// The `endpoint` label of requests that matched no route.
pub const UNMATCHED_ENDPOINT: &str = "UNMATCHED";

/// Everything the metrics endpoint needs.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    apps: Arc<AppStore>,
    server_stats: Arc<Stats>,
    /// The Redis bridge, when `ADAPTER_DRIVER=redis`.
    cluster: Option<Arc<BridgeStats>>,
    prefix: String,
    port: u16,
    /// Set with `RATE_LIMITER_DRIVER=redis`: the rate limiter's Redis series.
    rate_limiter_redis: Option<Arc<RedisHealth>>,
    /// Set when some app has webhooks.
    webhooks: Option<Arc<crate::webhooks::WebhookStats>>,
}

impl Metrics {
    /// Build the exporter and the middleware for the public app. `prefix` is
    /// Sockudo's `metrics.prometheus.prefix` (`sockudo_`).
    pub fn new(
        prefix: &str,
        port: u16,
        apps: Arc<AppStore>,
        server_stats: Arc<Stats>,
        cluster: Option<Arc<BridgeStats>>,
    ) -> Result<(Metrics, PrometheusMetrics), String> {
        let registry = Registry::new();
        let namespace = prefix.trim_end_matches('_');
        // Unmatched paths are counted under one label: labelled by the raw
        // path, every probe for a random URL would add series for ever.
        let middleware = PrometheusMetricsBuilder::new(namespace)
            .registry(registry.clone())
            .mask_unmatched_patterns(UNMATCHED_ENDPOINT)
            .build()
            .map_err(|e| format!("could not set up HTTP metrics: {e}"))?;
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                namespace,
            );
            registry
                .register(Box::new(process))
                .map_err(|e| format!("could not register process metrics: {e}"))?;
        }
        Ok((
            Metrics {
                registry,
                apps,
                server_stats,
                cluster,
                prefix: prefix.to_string(),
                port,
                rate_limiter_redis: None,
                webhooks: None,
            },
            middleware,
        ))
    }

    /// Show the rate limiter's Redis series (`RATE_LIMITER_DRIVER=redis`).
    pub fn show_rate_limiter_redis(&mut self, health: Arc<RedisHealth>) {
        self.rate_limiter_redis = Some(health);
    }

    /// Show the webhook series (some app has webhooks).
    pub fn show_webhooks(&mut self, stats: Arc<crate::webhooks::WebhookStats>) {
        self.webhooks = Some(stats);
    }

    /// The full text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding our own registry's families cannot fail.
        let _ = encoder.encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        self.render_stats(&mut text);
        if let Some(cluster) = &self.cluster {
            self.render_cluster(&mut text, cluster);
        }
        if let Some(webhooks) = &self.webhooks {
            self.render_webhooks(&mut text, webhooks);
        }
        text
    }

    /// The Redis bridge: node-wide series, labelled by `port` only.
    fn render_cluster(&self, out: &mut String, s: &BridgeStats) {
        let p = &self.prefix;
        let port = self.port;
        let mut series = |name: &str, help: &str, kind: &str, value: u64| {
            self.family(out, name, help, kind);
            let _ = writeln!(out, "{p}{name}{{port=\"{port}\"}} {value}");
        };
        series(
            "redis_connected",
            "1 while the Redis bridge is connected and subscribed (events cross between nodes)",
            "gauge",
            u64::from(s.connected()),
        );
        series(
            "redis_relay_sent_total",
            "Events published to the other nodes",
            "counter",
            s.sent(),
        );
        series(
            "redis_relay_received_total",
            "Events received from the other nodes",
            "counter",
            s.received(),
        );
        series(
            "cluster_nodes",
            "Other nodes this node hears from (not counting itself)",
            "gauge",
            s.peers(),
        );
        series(
            "cluster_dead_nodes_total",
            "Nodes declared dead after the node timeout without a heartbeat",
            "counter",
            s.dead_nodes(),
        );
        series(
            "cluster_resyncs_total",
            "Other nodes' whole state applied (a node joined or rejoined, or a missed change was repaired)",
            "counter",
            s.resyncs(),
        );
        let name = "redis_relay_dropped_total";
        self.family(
            out,
            name,
            "Events that did not cross between this node and the others",
            "counter",
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "{p}{name}{{port=\"{port}\",reason=\"{}\"}} {}",
                reason.label(),
                s.dropped(reason)
            );
        }
        let name = "redis_relay_latency_seconds";
        self.family(
            out,
            name,
            "From an event's publish on another node to its receipt here",
            "histogram",
        );
        let (buckets, sum) = s.latency();
        let les = LATENCY_BUCKETS.iter().map(|le| le.to_string());
        for (le, count) in les.chain(["+Inf".to_string()]).zip(buckets) {
            let _ = writeln!(
                out,
                "{p}{name}_bucket{{port=\"{port}\",le=\"{le}\"}} {count}"
            );
        }
        let count = buckets[LATENCY_BUCKETS.len()];
        let _ = writeln!(out, "{p}{name}_sum{{port=\"{port}\"}} {sum}");
        let _ = writeln!(out, "{p}{name}_count{{port=\"{port}\"}} {count}");
    }

    fn render_stats(&self, out: &mut String) {
        let all = self.apps.all();
        let apps: Vec<&App> = all.iter().map(|a| &**a).collect();
        self.family(out, "connected", "Sockets currently connected", "gauge");
        for app in &apps {
            self.row(
                out,
                "connected",
                &app.id,
                None,
                app.connection_count() as u64,
            );
        }
        type Field = fn(&Stats) -> &AtomicU64;
        let counters: [(&str, &str, Field); 11] = [
            ("new_connections_total", "Sockets opened", |s| {
                &s.new_connections
            }),
            ("new_disconnections_total", "Sockets closed", |s| {
                &s.disconnections
            }),
            (
                "ws_messages_received_total",
                "WebSocket messages received",
                |s| &s.ws_messages_received,
            ),
            ("ws_messages_sent_total", "WebSocket messages sent", |s| {
                &s.ws_messages_sent
            }),
            (
                "ws_messages_dropped_total",
                "WebSocket messages dropped because the socket's outbound queue was full",
                |s| &s.ws_messages_dropped,
            ),
            (
                "socket_received_bytes",
                "WebSocket payload bytes received",
                |s| &s.ws_bytes_received,
            ),
            (
                "socket_transmitted_bytes",
                "WebSocket payload bytes sent",
                |s| &s.ws_bytes_sent,
            ),
            (
                "channel_subscriptions_total",
                "Channel subscriptions",
                |s| &s.subscriptions,
            ),
            (
                "channel_unsubscriptions_total",
                "Channel unsubscriptions",
                |s| &s.unsubscriptions,
            ),
            ("client_events_total", "Client events accepted", |s| {
                &s.client_events
            }),
            (
                "api_events_published_total",
                "Events published through the HTTP API, per channel",
                |s| &s.api_events_published,
            ),
        ];
        for (name, help, field) in counters {
            self.family(out, name, help, "counter");
            for app in &apps {
                self.row(out, name, &app.id, None, stats::get(field(&app.stats)));
            }
        }
        // Refusals before an app is known are counted with app_id="".
        let rows: Vec<(&str, &Stats)> = apps
            .iter()
            .map(|a| (a.id.as_ref(), &*a.stats))
            .chain(std::iter::once(("", &*self.server_stats)))
            .collect();
        let name = "connection_errors_total";
        self.family(
            out,
            name,
            "Connections refused or closed by the server",
            "counter",
        );
        for (app_id, s) in &rows {
            for kind in ConnectionError::ALL {
                let label = Some(("error_type", kind.label()));
                self.row(out, name, app_id, label, s.connection_errors(kind));
            }
        }
        let name = "auth_failures_total";
        self.family(out, name, "Failed signature checks", "counter");
        for (app_id, s) in &rows {
            for kind in AuthFailure::ALL {
                self.row(
                    out,
                    name,
                    app_id,
                    Some(("kind", kind.label())),
                    s.auth_failures(kind),
                );
            }
        }
        let name = "rate_limit_triggered_total";
        self.family(out, name, "Requests refused by a rate limit", "counter");
        for (app_id, s) in &rows {
            for kind in RateLimit::ALL {
                let label = Some(("limiter_type", kind.label()));
                self.row(out, name, app_id, label, s.rate_limits(kind));
            }
        }
        if let Some(health) = &self.rate_limiter_redis {
            self.render_rate_limiter_redis(out, health);
        }
    }

    /// The node's view of the rate limiter's Redis: not per app.
    fn render_rate_limiter_redis(&self, out: &mut String, health: &RedisHealth) {
        let series: [(&str, &str, &str, u64); 3] = [
            (
                "rate_limiter_redis_up",
                "1 while the rate limiter's Redis answers, 0 while this node enforces the limits on its own",
                "gauge",
                u64::from(health.is_up()),
            ),
            (
                "rate_limiter_redis_outages_total",
                "Times the rate limiter lost Redis and fell back to per-node limits",
                "counter",
                health.outages(),
            ),
            (
                "rate_limiter_redis_fallbacks_total",
                "Rate-limit checks this node decided alone because Redis failed or was down",
                "counter",
                health.fallbacks(),
            ),
        ];
        let (p, port) = (&self.prefix, self.port);
        for (name, help, kind, value) in series {
            self.family(out, name, help, kind);
            let _ = writeln!(out, "{p}{name}{{port=\"{port}\"}} {value}");
        }
    }

    /// Webhook delivery, node-wide.
    fn render_webhooks(&self, out: &mut String, s: &crate::webhooks::WebhookStats) {
        let series: [(&str, &str, &str, u64); 5] = [
            ("webhook_sent_total", "Webhook events delivered (the receiver answered 2xx)", "counter", s.sent()),
            ("webhook_failed_total", "Webhook requests the receiver refused for good (4xx other than 408/409/425/429)", "counter", s.failed()),
            ("webhook_retried_total", "Webhook attempts after the first", "counter", s.retried()),
            ("webhook_dropped_total", "Webhook events not delivered (refused, retry budget spent, queue full): dead-lettered", "counter", s.dropped()),
            ("webhook_queue_depth", "Webhook events waiting for delivery", "gauge", s.queued()),
        ];
        let (p, port) = (&self.prefix, self.port);
        for (name, help, kind, value) in series {
            self.family(out, name, help, kind);
            let _ = writeln!(out, "{p}{name}{{port=\"{port}\"}} {value}");
        }
        let name = "webhook_delivery_latency_seconds";
        self.family(
            out,
            name,
            "From the channel activity to the receiver's 2xx, batching and retries included",
            "histogram",
        );
        let (buckets, count, sum) = s.latency();
        for (le, n) in buckets {
            let _ = writeln!(out, "{p}{name}_bucket{{port=\"{port}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{p}{name}_bucket{{port=\"{port}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "{p}{name}_sum{{port=\"{port}\"}} {sum}");
        let _ = writeln!(out, "{p}{name}_count{{port=\"{port}\"}} {count}");
    }

    fn family(&self, out: &mut String, name: &str, help: &str, kind: &str) {
        let p = &self.prefix;
        let _ = writeln!(out, "# HELP {p}{name} {help}\n# TYPE {p}{name} {kind}");
    }

    fn row(
        &self,
        out: &mut String,
        name: &str,
        app_id: &str,
        extra: Option<(&str, &str)>,
        value: u64,
    ) {
        let p = &self.prefix;
        let port = self.port;
        let app_id = escape(app_id);
        match extra {
            Some((label, v)) => {
                let _ = writeln!(
                    out,
                    "{p}{name}{{app_id=\"{app_id}\",port=\"{port}\",{label}=\"{v}\"}} {value}"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{p}{name}{{app_id=\"{app_id}\",port=\"{port}\"}} {value}"
                );
            }
        }
    }
}

/// Escape a label value per the text exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics` on the metrics listener.
pub async fn endpoint(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
