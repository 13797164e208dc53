//! Human-readable output: a table per run, and a side-by-side markdown
//! comparison of several JSON result files.

use serde_json::Value;

/// Flattens a JSON value into `(dotted.key, rendered value)` rows, skipping
/// arrays (raw samples) and nulls.
pub fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(_) | Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Two-column text table of every scalar in `v`.
pub fn table(title: &str, v: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(6);
    let mut s = format!("\n== {title} ==\n");
    for (k, v) in rows {
        s.push_str(&format!("  {k:<w$}  {v}\n"));
    }
    s
}

/// Headline metrics, one per line: `label | JSON pointer | scale divisor | target`.
const HEADLINES: &str = "\
idle: connections ok | /results/idle/connections_ok | 1 |
idle: connect rate (conn/s) | /results/idle/connect_rate_per_s | 1 |
idle: server RSS per connection (KiB, marginal) | /results/idle/server_rss_per_conn_bytes | 1024 | < 16
idle: server RSS per connection (KiB, total/N) | /results/idle/server_rss_total_per_conn_bytes | 1024 |
idle: server RSS loaded (MiB) | /results/idle/server_rss_loaded_bytes | 1048576 |
idle: server RSS after all closed (MiB) | /results/idle/server_rss_after_close_bytes | 1048576 |
idle: server CPU per connect (µs) | /results/idle/server_cpu_us_per_conn | 1 |
idle: server CPU while idle (% of a core) | /results/idle/server_cpu_idle_pct | 1 |
fanout: deliveries/s | /results/fanout/deliveries_per_s | 1 |
fanout: delivery ratio | /results/fanout/delivery_ratio | 1 | 1.0
fanout: latency p50 (ms) | /results/fanout/latency/p50_ms | 1 |
fanout: latency p99 (ms) | /results/fanout/latency/p99_ms | 1 | < 50
fanout: latency p99.9 (ms) | /results/fanout/latency/p999_ms | 1 |
fanout: server CPU s per million deliveries | /results/fanout/server_cpu_s_per_million_deliveries | 1 | < 2
fanout: … of which user space | /results/fanout/server_user_cpu_s_per_million_deliveries | 1 |
fanout: … of which kernel | /results/fanout/server_sys_cpu_s_per_million_deliveries | 1 |
fanout: loopback floor, CPU s per million writes | /results/fanout/loopback_floor/cpu_s_per_million_writes | 1 |
fanout: server CPU above the floor, s per million | /results/fanout/server_cpu_s_per_million_above_floor | 1 |
fanout: publish HTTP latency p99 (ms) | /results/fanout/publish_http_latency/p99_ms | 1 |
publish: publishes/s | /results/publish/publishes_per_s | 1 |
publish: server CPU µs per publish | /results/publish/server_cpu_us_per_publish | 1 | < 10
publish: HTTP floor, CPU µs per request (do-nothing server) | /results/publish/http_floor/cpu_us_per_request | 1 |
publish: server CPU above the floor, µs per publish | /results/publish/server_cpu_us_per_publish_above_floor | 1 |
publish: latency p99 (ms) | /results/publish/latency/p99_ms | 1 |
publish: HTTP reconnects (server closed keep-alive) | /results/publish/http_reconnects | 1 |
publish: client CPU utilisation | /results/publish/client_cpu_utilisation | 1 |
churn: cycles/s | /results/churn/cycles_per_s | 1 |
churn: ops/s | /results/churn/ops_per_s | 1 |
churn: errors | /results/churn/errors | 1 |
churn: RSS drift after warm-up (%) | /results/churn/rss_drift/drift_pct | 1 | < 5
churn: RSS slope (%/min) | /results/churn/rss_drift/slope_pct_per_min | 1 |
churn: server CPU per cycle (µs) | /results/churn/server_cpu_us_per_cycle | 1 |
cluster: deliveries/s | /results/cluster/deliveries_per_s | 1 |
cluster: delivery ratio | /results/cluster/delivery_ratio | 1 | 1.0
cluster: same-node (A) latency p50 (ms) | /results/cluster/same_node/latency/p50_ms | 1 |
cluster: same-node (A) latency p99 (ms) | /results/cluster/same_node/latency/p99_ms | 1 |
cluster: same-node (A) latency max (ms) | /results/cluster/same_node/latency/max_ms | 1 |
cluster: cross-node (B) latency p50 (ms) | /results/cluster/cross_node/latency/p50_ms | 1 |
cluster: cross-node (B) latency p99 (ms) | /results/cluster/cross_node/latency/p99_ms | 1 |
cluster: cross-node (B) latency max (ms) | /results/cluster/cross_node/latency/max_ms | 1 |
cluster: cross-node p99 − same-node p99 (ms) | /results/cluster/targets/cross_node_p99_minus_same_node_ms/value | 1 | ≤ 2
cluster: node A CPU s per million deliveries | /results/cluster/node_a/cpu_s_per_million_deliveries | 1 |
cluster: node B CPU s per million deliveries | /results/cluster/node_b/cpu_s_per_million_deliveries | 1 |
cluster: Redis CPU s per million deliveries | /results/cluster/redis/cpu_s_per_million_deliveries | 1 |
cluster: total (A + B + Redis) CPU s per million deliveries | /results/cluster/total/cpu_s_per_million_deliveries | 1 | ≤ ½ Sockudo
cluster: … of which user space | /results/cluster/total/user_cpu_s_per_million_deliveries | 1 |
cluster: … of which kernel | /results/cluster/total/sys_cpu_s_per_million_deliveries | 1 |
cluster: loopback floor, CPU s per million writes | /results/cluster/loopback_floor/cpu_s_per_million_writes | 1 |
cluster: total CPU above the floor, s per million | /results/cluster/total_cpu_s_per_million_above_floor | 1 |
cluster: node A RSS (MiB) | /results/cluster/node_a/rss_bytes | 1048576 |
cluster: node B RSS (MiB) | /results/cluster/node_b/rss_bytes | 1048576 |
cluster: Redis RSS (MiB) | /results/cluster/redis/rss_bytes | 1048576 |
cluster: publish HTTP latency p99 (ms) | /results/cluster/publish_http_latency/p99_ms | 1 |
private: users subscribed | /results/private/users_ok | 1 |
private: server CPU µs per publish | /results/private/server_cpu_us_per_publish | 1 |
private: delivery ratio | /results/private/delivery_ratio | 1 | 1.0
private: latency p50 (ms) | /results/private/latency/p50_ms | 1 |
private: latency p99 (ms) | /results/private/latency/p99_ms | 1 |
private: server RSS loaded (MiB) | /results/private/server_rss_loaded_bytes | 1048576 |
private: server RSS per user (KiB) | /results/private/server_rss_per_user_bytes | 1024 |
private: server CPU µs per subscribed user | /results/private/server_cpu_us_per_subscribed_user | 1 |
presence: users joined | /results/presence/joined | 1 |
presence: seconds until all know all (from first join) | /results/presence/secs_until_all_know_all | 1 |
presence: … after the last join | /results/presence/secs_after_last_join | 1 |
presence: member_added ratio | /results/presence/member_added_ratio | 1 | 1.0
presence: member_added deliveries/s | /results/presence/member_added_per_s | 1 |
presence: member_added latency p99 (ms) | /results/presence/member_added_latency/p99_ms | 1 |
presence: member_removed ratio | /results/presence/member_removed_ratio | 1 | 1.0
presence: member_removed latency p99 (ms) | /results/presence/member_removed_latency/p99_ms | 1 |
presence: server CPU µs per member_added | /results/presence/server_cpu_us_per_member_added | 1 |
presence: server CPU of the join phase (s) | /results/presence/server_cpu_join_s | 1 |
presence: peak server RSS (MiB) | /results/presence/server_rss_peak_bytes | 1048576 |
batch: events/s | /results/batch/events_per_s | 1 |
batch: server CPU µs per event | /results/batch/server_cpu_us_per_event | 1 |
batch: server CPU s per million deliveries | /results/batch/server_cpu_s_per_million_deliveries | 1 |
batch: delivery ratio | /results/batch/delivery_ratio | 1 | 1.0
batch: latency p50 (ms) | /results/batch/latency/p50_ms | 1 |
batch: latency p99 (ms) | /results/batch/latency/p99_ms | 1 |
batch: HTTP latency p99 (ms) | /results/batch/batch_http_latency/p99_ms | 1 |
reconnect: sockets back | /results/reconnect/sockets_back | 1 |
reconnect: seconds until all back | /results/reconnect/secs_until_all_back | 1 |
reconnect: time back p99 (ms) | /results/reconnect/time_back/p99_ms | 1 |
reconnect: failed attempts | /results/reconnect/failed_attempts | 1 | 0
reconnect: gave up | /results/reconnect/sockets_gave_up | 1 | 0
reconnect: server CPU during the storm (s) | /results/reconnect/server_cpu_storm_s | 1 |
reconnect: server CPU µs per reconnect | /results/reconnect/server_cpu_us_per_reconnect | 1 |
reconnect: peak server RSS (MiB) | /results/reconnect/server_rss_peak_bytes | 1048576 |
reconnect: check delivery ratio | /results/reconnect/check_delivery_ratio | 1 | 1.0
";

/// Issue 11's CPU target: the first run's total cluster CPU per delivery at
/// most this share of each other run's (Switchyard first, Sockudo after).
pub const CLUSTER_CPU_SHARE_TARGET: f64 = 0.5;

const CLUSTER_TOTAL: &str = "/results/cluster/total";

/// `subject / reference` of total CPU per delivery, and of its user and
/// kernel parts: (total, user, sys), each `None` when unknown.
pub fn cpu_shares(subject: &Value, reference: &Value) -> [Option<f64>; 3] {
    let get = |d: &Value, k: &str| {
        d.pointer(&format!("{CLUSTER_TOTAL}/{k}"))
            .and_then(Value::as_f64)
    };
    [
        "cpu_s_per_million_deliveries",
        "user_cpu_s_per_million_deliveries",
        "sys_cpu_s_per_million_deliveries",
    ]
    .map(|k| {
        let (s, r) = (get(subject, k)?, get(reference, k)?);
        (r > 0.0).then(|| (s / r * 1000.0).round() / 1000.0)
    })
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

/// The cluster targets of every run, and the first run's CPU against each
/// other run's; empty if no run has cluster results.
pub fn cluster_targets(docs: &[Value], labels: &[String]) -> String {
    let with: Vec<usize> = (0..docs.len())
        .filter(|&i| docs[i].pointer(CLUSTER_TOTAL).is_some())
        .collect();
    if with.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nCluster targets (issue 11):\n\n");
    for &i in &with {
        let t = |k: &str| docs[i].pointer(&format!("/results/cluster/targets/{k}"));
        let check = |k: &str, unit: &str| {
            let c = t(k);
            let value = c.and_then(|c| c.get("value")).map(|v| render(Some(v), 1.0));
            let ok = c.and_then(|c| c.get("met")).and_then(Value::as_bool);
            match (value, ok) {
                (Some(v), Some(ok)) => format!("{v}{unit} ({})", met(ok)),
                _ => "–".into(),
            }
        };
        s.push_str(&format!(
            "* {}: delivery ratio {} (target 1.0); cross-node p99 − same-node p99 {} (target ≤ 2 ms)\n",
            labels[i],
            check("delivery_ratio", ""),
            check("cross_node_p99_minus_same_node_ms", " ms"),
        ));
    }
    let first = with[0];
    for &j in &with[1..] {
        let [total, user, sys] = cpu_shares(&docs[first], &docs[j]);
        let r = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.3}"));
        s.push_str(&format!(
            "* {} total CPU (nodes + Redis) per delivery = {} × {}'s (target ≤ {CLUSTER_CPU_SHARE_TARGET}: {}); user space {} ×, kernel {} ×\n",
            labels[first],
            r(total),
            labels[j],
            total.map_or("unknown", |x| met(x <= CLUSTER_CPU_SHARE_TARGET)),
            r(user),
            r(sys),
        ));
    }
    s
}

/// Parsed [`HEADLINES`]: (label, pointer, scale, target).
fn headlines() -> impl Iterator<Item = (&'static str, &'static str, f64, &'static str)> {
    HEADLINES.lines().filter_map(|l| {
        let mut f = l.split('|').map(str::trim);
        let (name, ptr, scale) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
        Some((name, ptr, scale, f.next().unwrap_or("")))
    })
}

fn render(v: Option<&Value>, scale: f64) -> String {
    match v {
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(0.0) / scale;
            if scale == 1.0 && n.is_u64() {
                n.to_string()
            } else if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.3}")
            }
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "–".into(),
    }
}

fn label(doc: &Value, i: usize) -> String {
    doc.pointer("/target/label")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("run {}", i + 1))
}

/// Joins result files of the same server (same `target.label`), e.g. one
/// file per scenario, into one document per server, in first-seen order.
pub fn merge_by_label(docs: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let l = label(&d, i);
        match out.iter_mut().find(|o| label(o, usize::MAX) == l) {
            Some(o) => {
                if let (Some(dst), Some(Value::Object(src))) = (
                    o.get_mut("results").and_then(Value::as_object_mut),
                    d.get("results"),
                ) {
                    for (k, v) in src {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            }
            None => out.push(d),
        }
    }
    out
}

/// Markdown: headline metrics side by side, then every scalar.
pub fn compare(docs: &[Value]) -> String {
    let labels: Vec<String> = docs.iter().enumerate().map(|(i, d)| label(d, i)).collect();
    let mut s = String::from("| metric | target |");
    for l in &labels {
        s.push_str(&format!(" {l} |"));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---:|".repeat(docs.len()));
    s.push('\n');
    for (name, ptr, scale, target) in headlines() {
        if docs.iter().all(|d| d.pointer(ptr).is_none()) {
            continue;
        }
        s.push_str(&format!("| {name} | {target} |"));
        for d in docs {
            s.push_str(&format!(" {} |", render(d.pointer(ptr), scale)));
        }
        s.push('\n');
    }
    s.push_str(&cluster_targets(docs, &labels));
    // Full detail.
    let mut keys: Vec<String> = Vec::new();
    let per_doc: Vec<Vec<(String, String)>> = docs
        .iter()
        .map(|d| {
            let mut rows = Vec::new();
            if let Some(r) = d.get("results") {
                flatten("", r, &mut rows);
            }
            rows
        })
        .collect();
    for rows in &per_doc {
        for (k, _) in rows {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    s.push_str("\n<details><summary>All measured values</summary>\n\n| key |");
    for l in &labels {
        s.push_str(&format!(" {l} |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(docs.len()));
    s.push('\n');
    for k in keys {
        s.push_str(&format!("| {k} |"));
        for rows in &per_doc {
            let v = rows
                .iter()
                .find(|(rk, _)| *rk == k)
                .map(|(_, v)| v.replace('|', "\\|"))
                .unwrap_or_else(|| "–".into());
            s.push_str(&format!(" {v} |"));
        }
        s.push('\n');
    }
    s.push_str("\n</details>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_skips_arrays_and_nulls() {
        let mut rows = Vec::new();
        flatten(
            "",
            &json!({"a": {"b": 1, "c": null, "d": [1, 2]}, "e": "x"}),
            &mut rows,
        );
        assert_eq!(
            rows,
            vec![
                ("a.b".to_string(), "1".to_string()),
                ("e".into(), "x".into())
            ]
        );
    }

    #[test]
    fn headline_table_parses() {
        let h: Vec<_> = headlines().collect();
        assert_eq!(h.len(), HEADLINES.lines().count());
        assert!(h
            .iter()
            .all(|(_, p, s, _)| p.starts_with("/results/") && *s >= 1.0));
        assert_eq!(h[2].3, "< 16");
    }

    #[test]
    fn merge_joins_files_of_one_server() {
        let docs = vec![
            json!({"target": {"label": "A"}, "results": {"idle": {"x": 1}}}),
            json!({"target": {"label": "B"}, "results": {"idle": {"x": 2}}}),
            json!({"target": {"label": "A"}, "results": {"churn": {"y": 3}}}),
        ];
        let m = merge_by_label(docs);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["results"]["idle"]["x"], 1);
        assert_eq!(m[0]["results"]["churn"]["y"], 3);
        assert_eq!(m[1]["results"]["idle"]["x"], 2);
    }

    #[test]
    fn cluster_cpu_share_and_targets() {
        let doc = |label: &str, total: f64, user: f64, sys: f64, ok: bool| {
            json!({"target": {"label": label}, "results": {"cluster": {
                "total": {
                    "cpu_s_per_million_deliveries": total,
                    "user_cpu_s_per_million_deliveries": user,
                    "sys_cpu_s_per_million_deliveries": sys,
                },
                "targets": {
                    "delivery_ratio": {"value": 1.0, "met": ok},
                    "cross_node_p99_minus_same_node_ms": {"value": 0.5, "met": true},
                },
            }}})
        };
        let a = doc("switchyard", 7.0, 2.0, 5.0, true);
        let b = doc("sockudo", 10.0, 4.0, 6.0, false);
        assert_eq!(cpu_shares(&a, &b), [Some(0.7), Some(0.5), Some(0.833)]);
        assert_eq!(cpu_shares(&a, &json!({}))[0], None);
        let md = compare(&[a, b.clone()]);
        assert!(
            md.contains("* switchyard: delivery ratio 1.000 (met)"),
            "{md}"
        );
        assert!(
            md.contains("* sockudo: delivery ratio 1.000 (not met)"),
            "{md}"
        );
        assert!(
            md.contains("* switchyard total CPU (nodes + Redis) per delivery = 0.700 × sockudo's (target ≤ 0.5: not met); user space 0.500 ×, kernel 0.833 ×"),
            "{md}"
        );
        let half = doc("switchyard", 5.0, 2.0, 3.0, true);
        assert!(compare(&[half, b]).contains("0.500 × sockudo's (target ≤ 0.5: met)"));
        assert_eq!(cluster_targets(&[json!({})], &["x".into()]), "");
    }

    #[test]
    fn compare_puts_runs_side_by_side() {
        let a = json!({"target": {"label": "A"}, "results": {"idle": {"server_rss_per_conn_bytes": 8192.0}}});
        let b = json!({"target": {"label": "B"}, "results": {"idle": {"server_rss_per_conn_bytes": 4096.0}}});
        let md = compare(&[a, b]);
        assert!(md.contains("| metric | target | A | B |"), "{md}");
        assert!(
            md.contains(
                "| idle: server RSS per connection (KiB, marginal) | < 16 | 8.000 | 4.000 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| idle.server_rss_per_conn_bytes | 8192.0 | 4096.0 |"),
            "{md}"
        );
    }
}
