//! Tables from fox-bench JSON lines: one table per scenario key, one row per router
//! (the median run of repeated ones), and `RATIO <scenario> <peer> <ours / peer>` lines.
//!
//! For throughput scenarios the ratio is messages per second, foxrouter over the peer
//! (above 1: we are faster); a `CPU_RATIO` line beside it compares the router CPU seconds
//! per delivered message (below 1: we spend less), the figure that still tells routers
//! apart when the load generator was the limit. For fixed-rate scenarios (key ending in `-rateN`: every router
//! carries the same load) it is p99 latency, foxrouter over the peer (below 1: we are
//! faster). For `idle` it is RSS bytes per connection, foxrouter over the peer (below 1: we
//! use less). A failed run prints an `ERROR` row and a ratio of `n/a`.
//!
//! [`combine`] makes one row of the rows of load generators that ran at once against one
//! system (the cluster comparison of `bench/cluster.sh`: three fox-bench processes, one per
//! entry node), and [`render_one_table`] prints several scenario keys as one table.

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
/// Router CPU seconds per second of a row's measured duration from which its core counts
/// as saturated (a pinned router has one core; cpu_s also covers setup and warm-up).
const ROUTER_FLAT_OUT_MIN: f64 = 0.95;

/// Renders every scenario found in `lines` (JSON objects as written by `fox-bench --json`).
pub fn render(lines: &[Value]) -> String {
    let (order, groups) = group(lines);
    let mut out = String::new();
    for key in order {
        let Some(by_label) = groups.get(&key) else {
            continue;
        };
        let _ = writeln!(out, "\n== {key}\n{HEADER}");
        let fixed_rate = key.contains("-rate");
        let medians: BTreeMap<&String, (Value, usize)> = by_label
            .iter()
            .map(|(label, runs)| (label, chosen(runs, fixed_rate)))
            .collect();
        for (shown, runs) in medians.values() {
            let _ = writeln!(out, "{}", row(shown, *runs));
        }
        let reference = medians
            .iter()
            .find(|(label, _)| label.as_str() == REFERENCE_LABEL)
            .map(|(_, (v, _))| v);
        for (label, (peer, _)) in &medians {
            if label.as_str() == REFERENCE_LABEL {
                continue;
            }
            let ratio = reference.and_then(|ours| ratio(ours, peer, fixed_rate));
            let shown = ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
            let _ = writeln!(out, "RATIO {key} {label} {shown}");
            let cpu_ratio =
                reference.and_then(|ours| Some(cpu_per_message(ours)? / cpu_per_message(peer)?));
            if let Some(cpu_ratio) = cpu_ratio {
                let _ = writeln!(out, "CPU_RATIO {key} {label} {cpu_ratio:.2}");
            }
        }
    }
    out
}

/// Router CPU seconds per delivered message: `router_cpu_s` (the whole run, setup and
/// warm-up included) over the messages counted in the window. What a row cost the router
/// even when the load generator, not the router, was the limit (then msgs/s ties and only
/// this tells routers apart; against the relay it is the cost over moving the frames).
/// `CPU_RATIO` lines are foxrouter's over the peer's (below 1: foxrouter spends less).
fn cpu_per_message(run: &Value) -> Option<f64> {
    if run.get("error").is_some() {
        return None;
    }
    let cpu_seconds = run.get("router_cpu_s")?.as_f64()?;
    let messages = run.get("messages")?.as_f64()?;
    (messages > 0.0 && cpu_seconds > 0.0).then(|| cpu_seconds / messages)
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
    if let Some(rate) = number("connects_per_s") {
        notes.push(format!("{rate:.0} logins/s"));
    }
    if let Some(note) = run.get("note").and_then(Value::as_str) {
        notes.push(note.to_owned());
    }
    if runs > 1 {
        notes.push(format!("median of {runs}"));
    }
    // Worth a look only when the hypervisor took a noticeable share (shared VMs).
    if let Some(steal) = number("steal_pct").filter(|s| *s >= STEAL_SHOWN_MIN_PCT) {
        notes.push(format!("steal {steal:.0}%"));
    }
    let busy = number("bench_busy_pct");
    // The router's CPU over the row's measured duration (its cpu_s also covers setup and
    // warm-up): at ROUTER_FLAT_OUT_MIN or more its core was as saturated as the load
    // generators, and the row does not say which of the two limited it.
    let router_flat_out = match (number("router_cpu_s"), number("duration_s")) {
        (Some(cpu), Some(duration)) if duration > 0.0 => cpu / duration >= ROUTER_FLAT_OUT_MIN,
        _ => false,
    };
    match (number("parts").filter(|n| *n >= 2.0), busy) {
        (Some(n), Some(b)) if b >= BENCH_BUSY_SHOWN_MIN_PCT && router_flat_out => {
            notes.push(format!(
            "{n:.0} load generators still busy {b:.0}%, and the router busy too: both were a limit"
        ))
        }
        (Some(n), Some(b)) if b >= BENCH_BUSY_SHOWN_MIN_PCT => notes.push(format!(
            "{n:.0} load generators still busy {b:.0}%: the router was not the limit"
        )),
        (Some(n), Some(b)) => notes.push(format!("{n:.0} load generators, busy {b:.0}%")),
        (Some(n), None) => notes.push(format!("{n:.0} load generators")),
        (None, Some(b)) if b >= BENCH_BUSY_SHOWN_MIN_PCT => {
            notes.push(format!("load generator busy {b:.0}%"));
        }
        (None, _) => {}
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

/// Every scenario key of `lines` as one table (a `key` column first, keys in order of
/// appearance, labels in name order), then the `RATIO` lines, as [`render`] computes them.
pub fn render_one_table(lines: &[Value]) -> String {
    let (order, groups) = group(lines);
    let width = order.iter().map(String::len).max().unwrap_or(0).max(3);
    let mut out = format!("{:<width$}  {HEADER}\n", "key");
    let mut ratios = String::new();
    for key in &order {
        let Some(by_label) = groups.get(key) else {
            continue;
        };
        let fixed_rate = key.contains("-rate");
        for (label, runs) in by_label {
            let (shown, count) = chosen(runs, fixed_rate);
            let _ = writeln!(out, "{key:<width$}  {}", row(&shown, count));
            if label.as_str() == REFERENCE_LABEL {
                continue;
            }
            let ours = by_label
                .get(REFERENCE_LABEL)
                .map(|runs| chosen(runs, fixed_rate).0);
            let ratio = ours.and_then(|ours| ratio(&ours, &shown, fixed_rate));
            let shown = ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
            let _ = writeln!(ratios, "RATIO {key} {label} {shown}");
        }
    }
    out + &ratios
}

/// "delivery p50 A ms p99 B ms (ack p99 C ms)" for a row with a delivery subscriber.
pub fn delivery_note(row: &Value) -> Option<String> {
    let ms = |key: &str| row.get(key).and_then(Value::as_f64).map(|us| us / 1000.0);
    let (p50, p99) = (ms("delivery_p50_us")?, ms("delivery_p99_us")?);
    let ack = ms("p99_us").map_or(String::new(), |ack| format!(" (ack p99 {ack:.1} ms)"));
    Some(format!("delivery p50 {p50:.1} ms p99 {p99:.1} ms{ack}"))
}

/// One row for load generators that ran at once against one system: messages and
/// messages/s summed, p50 the median of their p50s, p99 / p99.9 / max the worst of theirs
/// (no process has the others' samples), in flight and connections summed, CPU steal the
/// highest, load-generator busy of the group (the parts' CPU seconds over the cores of the
/// one CPU set they shared; the highest part's when they do not say their CPUs and wall
/// time). `cpu_seconds` (the system's processes, measured by the caller) goes into
/// `router_cpu_s`. Any failed part, or none at all, makes an error row.
pub fn combine(parts: &[Value], label: &str, key: &str, cpu_seconds: Option<f64>) -> Value {
    let mut value = serde_json::json!({"label": label, "key": key, "parts": parts.len()});
    let fields = value.as_object_mut().expect("json! object literal");
    if let Some(first) = parts.first() {
        for copied in ["scenario", "payload_bytes", "duration_s"] {
            if let Some(v) = first.get(copied) {
                fields.insert(copied.into(), v.clone());
            }
        }
    }
    let error = if parts.is_empty() {
        Some("no load generator reported".to_owned())
    } else {
        parts.iter().find_map(|p| {
            p.get("error")
                .map(|e| e.as_str().map_or(e.to_string(), str::to_owned))
                .or_else(|| {
                    p.get("messages_per_s")
                        .is_none()
                        .then(|| format!("a part has no messages_per_s: {p}"))
                })
        })
    };
    if let Some(error) = error {
        fields.insert("error".into(), Value::from(error));
        return value;
    }
    let numbers = |key: &str| -> Vec<f64> {
        parts
            .iter()
            .filter_map(|p| p.get(key).and_then(Value::as_f64))
            .collect()
    };
    let highest = |key: &str| numbers(key).into_iter().reduce(f64::max);
    for summed in ["messages_per_s", "messages", "inflight", "connections"] {
        fields.insert(
            summed.into(),
            Value::from(numbers(summed).iter().sum::<f64>()),
        );
    }
    if let Some(p50) = median_of(numbers("p50_us")) {
        fields.insert("p50_us".into(), Value::from(p50));
    }
    // Rows with a delivery subscriber (`run --delivery`) only.
    if let Some(p50) = median_of(numbers("delivery_p50_us")) {
        fields.insert("delivery_p50_us".into(), Value::from(p50));
        let delivered = numbers("delivery_messages").iter().sum::<f64>();
        fields.insert("delivery_messages".into(), Value::from(delivered));
    }
    for worst in [
        "p99_us",
        "p999_us",
        "max_us",
        "delivery_p99_us",
        "delivery_max_us",
        "steal_pct",
        "bench_busy_pct",
    ] {
        if let Some(v) = highest(worst) {
            fields.insert(worst.into(), Value::from(v));
        }
    }
    if let Some(busy) = group_busy_percent(parts) {
        fields.insert("bench_busy_pct".into(), Value::from(busy));
        fields.insert(
            "bench_cpu_s".into(),
            Value::from(numbers("bench_cpu_s").iter().sum::<f64>()),
        );
    }
    if let Some(cpu) = cpu_seconds {
        fields.insert("router_cpu_s".into(), Value::from(cpu));
    }
    value
}

/// How busy load generators that shared one CPU set were together, percent: their CPU
/// seconds summed over (the longest wall time x the cores they could use: their threads
/// summed, at most the CPUs of the set). Each part's own figure is of its threads only,
/// so two processes on one core read ~50% each when together they held it. `None` unless
/// every part carries `bench_cpu_s`, `bench_cores`, `bench_cpus` and `bench_wall_s`.
fn group_busy_percent(parts: &[Value]) -> Option<f64> {
    let field = |part: &Value, key: &str| part.get(key).and_then(Value::as_f64);
    let (mut cpu_seconds, mut threads, mut cpus, mut wall_seconds) = (0.0, 0.0, 0.0f64, 0.0f64);
    for part in parts {
        cpu_seconds += field(part, "bench_cpu_s")?;
        threads += field(part, "bench_cores")?;
        cpus = cpus.max(field(part, "bench_cpus")?);
        wall_seconds = wall_seconds.max(field(part, "bench_wall_s")?);
    }
    let capacity = wall_seconds * threads.min(cpus);
    (capacity > 0.0).then(|| cpu_seconds * 100.0 / capacity)
}

/// The row shown for one label and how many runs it stands for. Rows rerun with several
/// load generators ([`combine`], `parts` >= 2; compare.sh reruns the rows in which one
/// fox-bench was the bottleneck) stand for the label when one of them succeeded and did
/// more than one generator, with the one-generator figure in the note; otherwise the
/// one-generator median, with the rerun's figure in the note.
fn chosen(runs: &[&Value], fixed_rate: bool) -> (Value, usize) {
    let is_split = |run: &&Value| run.get("parts").and_then(Value::as_f64).unwrap_or(1.0) >= 2.0;
    let (split, single): (Vec<&Value>, Vec<&Value>) = runs.iter().copied().partition(is_split);
    if split.is_empty() || single.is_empty() {
        return (median(runs, fixed_rate).clone(), runs.len());
    }
    let split_failed = !split.iter().any(|run| run.get("error").is_none());
    let (mut shown, count, other) = if split_failed {
        let alone = median(&single, fixed_rate).clone();
        (
            alone,
            single.len(),
            "the rerun with more load generators failed".to_owned(),
        )
    } else if !fixed_rate
        && figure(median(&single, false), false) > figure(median(&split, false), false)
    {
        // Both figures are lower bounds of the router's rate; the higher is the tighter
        // (two load generators sharing one core, as when pinned on two cores, do less).
        let together = figure(median(&split, false), false).unwrap_or(0.0);
        (
            median(&single, false).clone(),
            single.len(),
            format!("2 load generators did less: {together:.0} msgs/s"),
        )
    } else {
        let alone = match figure(median(&single, fixed_rate), fixed_rate) {
            Some(p99) if fixed_rate => format!("1 load generator: p99 {p99:.0} us"),
            Some(rate) => format!("1 load generator: {rate:.0} msgs/s"),
            None => "1 load generator: ERROR".to_owned(),
        };
        (median(&split, fixed_rate).clone(), split.len(), alone)
    };
    let note = match shown.get("note").and_then(Value::as_str) {
        Some(note) => format!("{note}; {other}"),
        None => other,
    };
    if let Some(fields) = shown.as_object_mut() {
        fields.insert("note".into(), Value::from(note));
    }
    (shown, count)
}

/// Runs by scenario key (keys in order of first appearance) and label.
type Groups<'a> = BTreeMap<String, BTreeMap<String, Vec<&'a Value>>>;

fn group(lines: &[Value]) -> (Vec<String>, Groups<'_>) {
    let mut order: Vec<String> = Vec::new();
    let mut groups = Groups::new();
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
    (order, groups)
}

/// The median (the mean of the middle two for an even count); `None` for no values.
fn median_of(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
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

/// The run with the median figure (failed runs sort first, so they win only by majority):
/// by throughput (or idle bytes), and for a fixed-rate key by p99, the figure its RATIO
/// compares. (Ordered by throughput, fixed-rate runs all tie at the rate, and the first
/// run was taken whatever its p99.) The row shows that run as measured.
fn median<'a>(runs: &[&'a Value], fixed_rate: bool) -> &'a Value {
    let mut sorted: Vec<&Value> = runs.to_vec();
    sorted.sort_by(|a, b| {
        figure(a, fixed_rate)
            .unwrap_or(-1.0)
            .total_cmp(&figure(b, fixed_rate).unwrap_or(-1.0))
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
    fn combine_sums_rates_takes_median_p50_and_worst_tails() {
        let parts = [
            json!({"scenario": "acked", "payload_bytes": 100, "duration_s": 5.0, "inflight": 86,
                "connections": 1, "messages_per_s": 1000.0, "messages": 5000, "p50_us": 300.0,
                "p99_us": 900.0, "p999_us": 1500.0, "max_us": 2000.0, "bench_busy_pct": 40.0}),
            json!({"inflight": 85, "connections": 1, "messages_per_s": 2000.0, "messages": 10000,
                "p50_us": 100.0, "p99_us": 4000.0, "p999_us": 5000.0, "max_us": 9000.0,
                "bench_busy_pct": 91.0, "steal_pct": 3.0}),
            json!({"inflight": 85, "connections": 1, "messages_per_s": 500.0, "messages": 2500,
                "p50_us": 200.0, "p99_us": 700.0, "p999_us": 800.0, "max_us": 1000.0,
                "delivery_messages": 2400, "delivery_p50_us": 900.0, "delivery_p99_us": 4500.0}),
        ];
        let row = combine(&parts, "foxrouter", "acked-K256", Some(9.5));
        assert_eq!(row["delivery_messages"], 2400.0);
        assert_eq!(row["delivery_p50_us"], 900.0);
        assert_eq!(row["delivery_p99_us"], 4500.0);
        assert_eq!(
            delivery_note(&row).as_deref(),
            Some("delivery p50 0.9 ms p99 4.5 ms (ack p99 4.0 ms)")
        );
        assert_eq!(row["label"], "foxrouter");
        assert_eq!(row["key"], "acked-K256");
        assert_eq!(row["scenario"], "acked");
        assert_eq!(row["parts"], 3);
        assert_eq!(row["messages_per_s"], 3500.0);
        assert_eq!(row["messages"], 17500.0);
        assert_eq!(row["inflight"], 256.0);
        assert_eq!(row["p50_us"], 200.0);
        assert_eq!(row["p99_us"], 4000.0);
        assert_eq!(row["p999_us"], 5000.0);
        assert_eq!(row["max_us"], 9000.0);
        assert_eq!(row["bench_busy_pct"], 91.0);
        assert_eq!(row["steal_pct"], 3.0);
        assert_eq!(row["router_cpu_s"], 9.5);
        assert!(row.get("error").is_none());
    }

    #[test]
    fn combine_makes_an_error_row_of_any_failed_or_missing_part() {
        let good = json!({"messages_per_s": 10.0, "p50_us": 1.0, "p99_us": 2.0});
        let failed = json!({"error": "connect 127.0.0.1:1: refused"});
        let row = combine(&[good.clone(), failed], "jetstream", "acked-K16", Some(1.0));
        assert_eq!(row["error"], "connect 127.0.0.1:1: refused");
        assert!(row.get("messages_per_s").is_none());
        let none = combine(&[], "jetstream", "acked-K16", None);
        assert_eq!(none["error"], "no load generator reported");
        let empty = combine(
            &[good, json!({"label": "x"})],
            "jetstream",
            "acked-K1",
            None,
        );
        assert!(
            empty["error"]
                .as_str()
                .unwrap()
                .contains("no messages_per_s"),
            "{empty}"
        );
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median_of(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_of(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median_of(Vec::new()), None);
    }

    #[test]
    fn one_table_has_every_key_and_the_ratio_lines_after_it() {
        let lines = vec![
            json!({"key": "acked-K1", "label": "foxrouter", "messages_per_s": 150.0,
                "note": "entries 1.0 ndb 2.0 sync 3.0"}),
            json!({"key": "acked-K1", "label": "jetstream", "messages_per_s": 4500.0}),
            json!({"key": "acked-K16", "label": "jetstream", "messages_per_s": 36000.0}),
            json!({"key": "acked-K16", "label": "foxrouter", "messages_per_s": 1800.0}),
            json!({"key": "acked-K256", "label": "foxrouter", "error": "timed out"}),
            json!({"key": "acked-K256", "label": "jetstream", "messages_per_s": 70000.0}),
        ];
        let text = render_one_table(&lines);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].starts_with("key         router"), "{text}");
        assert!(rows[1].starts_with("acked-K1    foxrouter"), "{text}");
        assert!(rows[1].ends_with("entries 1.0 ndb 2.0 sync 3.0"), "{text}");
        assert!(rows[3].starts_with("acked-K16   foxrouter"), "{text}");
        assert!(
            rows[5].starts_with("acked-K256  foxrouter    ERROR timed out"),
            "{text}"
        );
        assert_eq!(
            &rows[7..],
            [
                "RATIO acked-K1 jetstream 0.03",
                "RATIO acked-K16 jetstream 0.05",
                "RATIO acked-K256 jetstream n/a"
            ]
        );
    }

    #[test]
    fn a_fixed_rate_row_is_the_run_of_median_p99() {
        let run = |p99: f64| json!({"key": "pairs-rate20000", "label": "foxrouter", "messages_per_s": 20002.0, "p99_us": p99});
        let peer = json!({"key": "pairs-rate20000", "label": "noadmin", "messages_per_s": 20002.0, "p99_us": 3000.0});
        let lines = vec![run(13_566.0), run(2_417.0), run(2_310.0), peer];
        let text = render(&lines);
        assert!(
            text.contains("RATIO pairs-rate20000 noadmin 0.81"),
            "{text}"
        );
        assert!(text.contains("2417"), "{text}");
        assert!(!text.contains("13566"), "{text}");
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
    #[test]
    fn two_processes_on_one_core_are_busy_together() {
        let part = |cpu: f64| {
            json!({"messages_per_s": 100.0, "p50_us": 1.0, "p99_us": 2.0, "bench_cpu_s": cpu,
                "bench_cores": 1, "bench_cpus": 1, "bench_wall_s": 4.0, "bench_busy_pct": cpu * 25.0})
        };
        let row = combine(&[part(1.9), part(1.8)], "foxrouter", "pairs", Some(3.0));
        let busy = row["bench_busy_pct"].as_f64().unwrap();
        assert!((busy - 92.5).abs() < 1e-9, "{row}");
        assert!(
            (row["bench_cpu_s"].as_f64().unwrap() - 3.7).abs() < 1e-9,
            "{row}"
        );
        let spread = |cpu: f64| {
            let mut p = part(cpu);
            p["bench_cpus"] = json!(4);
            p
        };
        let row = combine(&[spread(1.9), spread(1.8)], "foxrouter", "pairs", None);
        assert!(
            (row["bench_busy_pct"].as_f64().unwrap() - 46.25).abs() < 1e-9,
            "{row}"
        );
    }

    #[test]
    fn a_row_rerun_with_two_load_generators_stands_for_its_label() {
        let lines = vec![
            json!({"key": "pairs-n16", "label": "foxrouter", "messages_per_s": 100.0, "bench_busy_pct": 97.0}),
            json!({"key": "pairs-n16", "label": "foxrouter", "messages_per_s": 150.0, "parts": 2,
                "bench_busy_pct": 60.0, "note": "2 load generators: 8 + 8 connections"}),
            json!({"key": "pairs-n16", "label": "rmqttd", "messages_per_s": 50.0, "bench_busy_pct": 40.0}),
            json!({"key": "pairs-n4", "label": "foxrouter", "messages_per_s": 100.0, "bench_busy_pct": 97.0}),
            json!({"key": "pairs-n4", "label": "foxrouter", "messages_per_s": 110.0, "parts": 2,
                "bench_busy_pct": 95.0}),
            json!({"key": "pairs-n8", "label": "mosquitto", "messages_per_s": 10.0, "parts": 2,
                "bench_busy_pct": 96.0, "router_cpu_s": 2.4, "duration_s": 2.0}),
            json!({"key": "pairs-n4", "label": "relay", "error": "refused", "parts": 2}),
            json!({"key": "pairs-n4", "label": "relay", "messages_per_s": 220.0}),
        ];
        let text = render(&lines);
        assert!(text.contains("RATIO pairs-n16 rmqttd 3.00"), "{text}");
        assert!(
            text.contains(
                "8 + 8 connections; 1 load generator: 100 msgs/s, 2 load generators, busy 60%"
            ),
            "{text}"
        );
        assert!(
            text.contains("2 load generators still busy 95%: the router was not the limit"),
            "{text}"
        );
        assert!(
            text.contains(
                "2 load generators still busy 96%, and the router busy too: both were a limit"
            ),
            "{text}"
        );
        assert!(text.contains("RATIO pairs-n4 relay 0.50"), "{text}");
        let lower = vec![
            json!({"key": "fanin", "label": "foxrouter", "messages_per_s": 700.0, "bench_busy_pct": 97.0}),
            json!({"key": "fanin", "label": "foxrouter", "messages_per_s": 540.0, "parts": 2,
                "bench_busy_pct": 92.0}),
        ];
        let lower_text = render(&lower);
        assert!(
            lower_text.contains("foxrouter           700"),
            "{lower_text}"
        );
        assert!(
            lower_text.contains("2 load generators did less: 540 msgs/s"),
            "{lower_text}"
        );
        assert!(
            !text.contains("CPU_RATIO"),
            "no router CPU figures here: {text}"
        );
        assert!(text.contains("more load generators failed"), "{text}");
        assert!(!text.contains("median of"), "{text}");
    }
    #[test]
    fn cpu_ratio_compares_router_cpu_per_message() {
        let lines = vec![
            json!({"key": "pairs", "label": "foxrouter", "messages_per_s": 100.0,
                "messages": 1000.0, "router_cpu_s": 2.0}),
            json!({"key": "pairs", "label": "relay", "messages_per_s": 100.0,
                "messages": 1000.0, "router_cpu_s": 1.0}),
            json!({"key": "pairs", "label": "rmqttd", "messages_per_s": 10.0}),
        ];
        let text = render(&lines);
        assert!(text.contains("RATIO pairs relay 1.00"), "{text}");
        assert!(text.contains("CPU_RATIO pairs relay 2.00"), "{text}");
        assert!(!text.contains("CPU_RATIO pairs rmqttd"), "{text}");
    }
}
