//! Tables from fox-bench JSON lines: one table per scenario key, one row per router
//! (the median run of repeated ones), and `RATIO <scenario> <peer> <ours / peer>` lines.
//!
//! For throughput scenarios the ratio is messages per second, foxrouter over the peer
//! (above 1: we are faster). For fixed-rate scenarios (key ending in `-rateN`: every router
//! carries the same load) it is p99 latency, foxrouter over the peer (below 1: we are
//! faster). For `idle` it is RSS bytes per connection, foxrouter over the peer (below 1: we
//! use less). A failed run prints an `ERROR` row and a ratio of `n/a`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The label whose figures are divided by each peer's.
pub const REFERENCE_LABEL: &str = "foxrouter";

/// One table row: the header used by [`row`] and [`render`].
pub const HEADER: &str =
    "router        msgs/s       p50_us    p99_us   p99.9_us     max_us  cpu_s  peak_rss_MiB  note";

/// Machine CPU steal below this share of a run is left out of its row.
const STEAL_SHOWN_MIN_PCT: f64 = 2.0;

/// A load generator this busy (of the cores it had, over the whole run with its warm-up)
/// may have been the bottleneck: its row says so, since the figure is then a lower bound.
const BENCH_BUSY_SHOWN_MIN_PCT: f64 = 85.0;

/// Renders every scenario found in `lines` (JSON objects as written by `fox-bench --json`).
pub fn render(lines: &[Value]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<&Value>>> = BTreeMap::new();
    for line in lines {
        let key = text(line, "key");
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups
            .entry(key)
            .or_default()
            .entry(text(line, "label"))
            .or_default()
            .push(line);
    }
    let mut out = String::new();
    for key in order {
        let Some(by_label) = groups.get(&key) else {
            continue;
        };
        let _ = writeln!(out, "\n== {key}\n{HEADER}");
        let medians: BTreeMap<&String, &Value> = by_label
            .iter()
            .map(|(label, runs)| (label, median(runs)))
            .collect();
        for (label, runs) in by_label {
            let _ = writeln!(out, "{}", row(medians[label], runs.len()));
        }
        let fixed_rate = key.contains("-rate");
        let reference = medians
            .iter()
            .find(|(label, _)| label.as_str() == REFERENCE_LABEL)
            .map(|(_, v)| *v);
        for (label, peer) in &medians {
            if label.as_str() == REFERENCE_LABEL {
                continue;
            }
            let ratio = reference.and_then(|ours| ratio(ours, peer, fixed_rate));
            let shown = ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
            let _ = writeln!(out, "RATIO {key} {label} {shown}");
        }
    }
    out
}

/// One formatted row for a run (`runs`: how many runs the figures are the median of).
pub fn row(run: &Value, runs: usize) -> String {
    let label = text(run, "label");
    if let Some(error) = run.get("error").and_then(Value::as_str) {
        return format!("{label:<12} ERROR {error}");
    }
    let number = |key: &str| run.get(key).and_then(Value::as_f64);
    let cell = |key: &str, width: usize| {
        number(key).map_or(format!("{:>width$}", "-"), |v| format!("{v:>width$.0}"))
    };
    let cpu = number("router_cpu_s").map_or("     -".to_owned(), |v| format!("{v:>6.1}"));
    let rss = number("router_peak_rss_kib").map_or("            -".to_owned(), |v| {
        format!("{:>13.1}", v / 1024.0)
    });
    let mut notes = Vec::new();
    if let Some(bytes) = number("idle_bytes_per_connection") {
        let connected = number("connected").unwrap_or(0.0);
        notes.push(format!("{bytes:.0} B/conn over {connected:.0} conns"));
    }
    if runs > 1 {
        notes.push(format!("median of {runs}"));
    }
    // Worth a look only when the hypervisor took a noticeable share (shared VMs).
    if let Some(steal) = number("steal_pct").filter(|s| *s >= STEAL_SHOWN_MIN_PCT) {
        notes.push(format!("steal {steal:.0}%"));
    }
    if let Some(busy) = number("bench_busy_pct").filter(|b| *b >= BENCH_BUSY_SHOWN_MIN_PCT) {
        notes.push(format!("load generator busy {busy:.0}%"));
    }
    let note = notes.join(", ");
    format!(
        "{label:<12} {} {} {} {} {} {cpu} {rss}  {note}",
        cell("messages_per_s", 10),
        cell("p50_us", 10),
        cell("p99_us", 9),
        cell("p999_us", 10),
        cell("max_us", 10),
    )
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

/// The figure compared across routers: messages/s, or bytes per idle connection, or
/// (`fixed_rate`) p99 latency.
fn figure(run: &Value, fixed_rate: bool) -> Option<f64> {
    if run.get("error").is_some() {
        return None;
    }
    let key = if fixed_rate {
        "p99_us"
    } else {
        "messages_per_s"
    };
    run.get("idle_bytes_per_connection")
        .or_else(|| run.get(key))
        .and_then(Value::as_f64)
}

/// The run with the median figure (failed runs sort first, so they win only by majority).
fn median<'a>(runs: &[&'a Value]) -> &'a Value {
    let mut sorted: Vec<&Value> = runs.to_vec();
    // Runs are ordered by throughput (or idle bytes) even for fixed-rate keys: the median
    // run's latency is reported as measured in that run.
    sorted.sort_by(|a, b| {
        figure(a, false)
            .unwrap_or(-1.0)
            .total_cmp(&figure(b, false).unwrap_or(-1.0))
    });
    sorted[sorted.len() / 2]
}

fn ratio(ours: &Value, peer: &Value, fixed_rate: bool) -> Option<f64> {
    let (ours, peer) = (figure(ours, fixed_rate)?, figure(peer, fixed_rate)?);
    (peer > 0.0).then(|| ours / peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ratio_lines_and_error_rows() {
        let lines = vec![
            json!({"key": "pairs-mqtt3-qos0", "label": "foxrouter", "messages_per_s": 300.0}),
            json!({"key": "pairs-mqtt3-qos0", "label": "foxrouter", "messages_per_s": 200.0}),
            json!({"key": "pairs-mqtt3-qos0", "label": "foxrouter", "messages_per_s": 100.0}),
            json!({"key": "pairs-mqtt3-qos0", "label": "mosquitto", "messages_per_s": 100.0}),
            json!({"key": "pairs-mqtt3-qos0", "label": "rumqttd", "error": "connect refused"}),
        ];
        let text = render(&lines);
        assert!(
            text.contains("RATIO pairs-mqtt3-qos0 mosquitto 2.00"),
            "{text}"
        );
        assert!(
            text.contains("RATIO pairs-mqtt3-qos0 rumqttd n/a"),
            "{text}"
        );
        assert!(
            text.contains("rumqttd      ERROR connect refused"),
            "{text}"
        );
        assert!(text.contains("median of 3"), "{text}");
    }

    #[test]
    fn notes_name_idle_bytes_runs_and_noticeable_steal() {
        let idle = json!({"label": "foxrouter", "idle_bytes_per_connection": 3624.0,
            "connected": 10000.0, "steal_pct": 12.4});
        assert!(
            row(&idle, 1).ends_with("  3624 B/conn over 10000 conns, steal 12%"),
            "{}",
            row(&idle, 1)
        );
        let quiet = json!({"label": "foxrouter", "messages_per_s": 5.0, "steal_pct": 0.4});
        assert!(
            row(&quiet, 3).ends_with("  median of 3"),
            "{}",
            row(&quiet, 3)
        );
        assert!(!row(&quiet, 1).contains("steal"), "{}", row(&quiet, 1));
    }

    #[test]
    fn a_saturated_load_generator_is_named_in_the_row() {
        let capped = json!({"label": "rumqttd", "messages_per_s": 5.0, "bench_busy_pct": 97.2});
        assert!(
            row(&capped, 1).ends_with("  load generator busy 97%"),
            "{}",
            row(&capped, 1)
        );
        let spare = json!({"label": "rumqttd", "messages_per_s": 5.0, "bench_busy_pct": 41.0});
        assert!(!row(&spare, 1).contains("busy"), "{}", row(&spare, 1));
    }

    #[test]
    fn fixed_rate_ratio_compares_p99() {
        let lines = vec![
            json!({"key": "pairs-rate100", "label": "foxrouter", "messages_per_s": 100.0, "p99_us": 50.0}),
            json!({"key": "pairs-rate100", "label": "mosquitto", "messages_per_s": 100.0, "p99_us": 200.0}),
        ];
        assert!(
            render(&lines).contains("RATIO pairs-rate100 mosquitto 0.25"),
            "{}",
            render(&lines)
        );
    }
}
