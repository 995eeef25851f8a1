//! `cargo det bench`: the thesis's Tables 4 and 5, measured in a guest.
//!
//! Boots the `bench` profile with `det-bench` (userland/demos/harness) as
//! the command, shows each measurement as it arrives (`[3/40] lu 64 N=2
//! ...`), and writes next to that image, in `images/bench/`:
//! `results.csv`, `results.json`, `table.txt` (also printed: each ratio
//! beside the thesis's at the same size and N) and one plot per demo
//! (`overhead-<demo>.svg` and `.png`: det ÷ pthread vs input size, one
//! line per N, the thesis's dashed). The results belong to the image they
//! were measured on: rebuilding the profile with other inputs replaces the
//! directory. `--replot` redraws from `results.json` without booting.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bootproto::Mode;
use serde_json::{json, Value};

use crate::build;
use crate::cmdline;
use crate::fsutil::write_atomic;
use crate::plot::{self, Chart, Series};
use crate::project::Project;
use crate::qemu::BootOpts;
use crate::qemu::{self, Boot, Logs};
use crate::verdict::Verdict;

/// The full plan: the thesis's sizes that finish on a 2-CPU TCG guest in
/// about an hour (TCG runs these programs 10-50× slower than the host).
pub const FULL: &[&str] = &[
    "md5:4",
    "matmult:16,32,64,128,256,512,1024",
    "lu:16,32,64,128,256,512,1024",
    "qsort:1000,4000,10000,40000,100000,400000,1000000,4000000,10000000",
];

/// `--quick`: a few sizes per demo, a few minutes.
pub const QUICK: &[&str] = &[
    "md5:3",
    "matmult:16,64,256",
    "lu:16,64,256",
    "qsort:1000,10000,100000,1000000",
];

#[derive(clap::Args)]
pub struct Args {
    /// Profile to boot.
    #[arg(long, short, default_value = "bench")]
    pub profile: String,
    /// A few sizes per demo with shorter runs (minutes, not an hour).
    #[arg(long)]
    pub quick: bool,
    /// Instead of the built-in plan: DEMO:SIZE[,SIZE...] items, e.g.
    /// `--plan lu:16,2048 --plan qsort:1000`.
    #[arg(long)]
    pub plan: Vec<String>,
    /// Only these demos (comma-separated: md5, qsort, matmult, lu).
    #[arg(long, value_delimiter = ',')]
    pub demos: Vec<String>,
    /// Values of N (guest CPUs used), comma-separated; default 1..=CPUs.
    #[arg(long, value_delimiter = ',')]
    pub n: Vec<u32>,
    /// Each timed run lasts at least this long (default 2, --quick 0.5).
    #[arg(long)]
    pub min_secs: Option<f64>,
    /// Runs per timing; the median counts. A row timed by difference whose
    /// start-up comes out implausible gets at least 3
    #[arg(long, default_value_t = 1)]
    pub trials: u32,
    /// Do not boot: redraw the table and plots from images/bench/results.json.
    #[arg(long)]
    pub replot: bool,
    #[command(flatten)]
    pub boot: BootOpts,
}

/// One `BENCH` line: its keys and values, in order.
pub type Row = BTreeMap<String, String>;

pub fn run(project: &Project, o: &Args) -> Result<ExitCode> {
    let profile = project.profile(&o.profile)?;
    let out = project.output(&profile.name);
    if o.replot {
        let text = fs::read_to_string(out.join("results.json")).with_context(|| {
            format!(
                "reading {}/results.json (run `cargo det bench` first)",
                project.show(&out)
            )
        })?;
        let json: Value = serde_json::from_str(&text).context("parsing results.json")?;
        let rows: Vec<Row> = json["results"]
            .as_array()
            .context("results.json has no `results` array")?
            .iter()
            .map(|r| {
                r.as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), json_text(v))).collect())
                    .unwrap_or_default()
            })
            .collect();
        write_outputs(project, &out, &rows, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    let plan = plan(o)?;
    let min_secs = o.min_secs.unwrap_or(if o.quick { 0.5 } else { 2.0 });
    let mut command = format!(
        "det-bench --min-secs {min_secs} --trials {}",
        o.trials.max(1)
    );
    if !o.n.is_empty() {
        let list: Vec<String> = o.n.iter().map(u32::to_string).collect();
        command.push_str(&format!(" --cpus {}", list.join(",")));
    }
    for p in &plan {
        command.push(' ');
        command.push_str(p);
    }
    let image = build::build(project, &profile)?;
    let boot = Boot::resolve(project, &profile, &image, &o.boot);
    let cmdline = cmdline::harness(&profile, boot.cpus, &Mode::Command(command), &[]);
    let logs = Logs {
        dir: project.images().join("logs").join("bench"),
    };
    eprintln!(
        "benchmark: {} CPUs ({:?}), {}; this takes {}",
        boot.cpus,
        boot.accel,
        plan.join(" "),
        if o.quick {
            "minutes"
        } else {
            "about an hour under TCG"
        }
    );
    let mut progress = Progress::default();
    let outcome = qemu::boot_captured(
        &image,
        &boot,
        &cmdline,
        logs,
        false,
        qemu::each_line(|l| progress.line(l)),
    )?;
    let rows: Vec<Row> = outcome.output.lines().filter_map(parse_bench).collect();
    let done = outcome
        .output
        .lines()
        .any(|l| bootproto::record::tagged(l, "BENCH-DONE").is_some());
    let guest = json!({
        "cpus": boot.cpus,
        "accel": format!("{:?}", boot.accel),
        "memory_mib": boot.memory_mib,
        "profile": profile.name,
        "min_secs": min_secs,
        "trials": o.trials.max(1),
        "plan": plan,
    });
    if !rows.is_empty() {
        write_outputs(project, &out, &rows, Some(guest))?;
    }
    let c = &outcome.classification;
    if !done || !matches!(c.verdict, Verdict::Passed | Verdict::Failed) {
        qemu::report_problem(project, &outcome);
        bail!("the benchmark did not finish ({} results kept)", rows.len());
    }
    let errors = rows.iter().filter(|r| r.contains_key("error")).count();
    if errors > 0 {
        eprintln!("{errors} measurement(s) failed: see `error` in results.csv");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A results.json value as text, as det-bench would print it: a whole
/// number without a fraction (`0.0` was stored for det-bench's `0.0`).
fn json_text(v: &Value) -> String {
    match (v.as_str(), v.as_f64()) {
        (Some(s), _) => s.to_string(),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

/// The `DEMO:SIZES` arguments of `det-bench`.
fn plan(o: &Args) -> Result<Vec<String>> {
    let base: Vec<String> = if !o.plan.is_empty() {
        o.plan.clone()
    } else if o.quick {
        QUICK.iter().map(|s| s.to_string()).collect()
    } else {
        FULL.iter().map(|s| s.to_string()).collect()
    };
    for p in &base {
        let ok = p.split_once(':').is_some_and(|(d, sizes)| {
            !d.is_empty() && !sizes.is_empty() && sizes.split(',').all(|s| s.parse::<u64>().is_ok())
        });
        if !ok {
            bail!("`{p}` is not DEMO:SIZE[,SIZE...]");
        }
    }
    let plan: Vec<String> = base
        .into_iter()
        .filter(|p| {
            o.demos.is_empty()
                || o.demos
                    .iter()
                    .any(|d| p.split(':').next() == Some(d.as_str()))
        })
        .collect();
    if plan.is_empty() {
        bail!("no demo left to run (demos: md5, qsort, matmult, lu)");
    }
    Ok(plan)
}

/// The fields of a `BENCH` record (`bootproto::record`); `None` for any
/// other line and for a malformed one.
pub fn parse_bench(line: &str) -> Option<Row> {
    let row = bootproto::record::tagged(line, "BENCH")?
        .map(|f| f.map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Result<Row, _>>()
        .ok()?;
    row.contains_key("demo").then_some(row)
}

/// Shows each measurement as it arrives.
#[derive(Default)]
struct Progress {
    total: Option<usize>,
    done: usize,
    started: Option<std::time::Instant>,
}

impl Progress {
    /// One line of det-bench's output.
    fn line(&mut self, line: &str) {
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        if let Some(rest) = line.strip_prefix("BENCH-PLAN ") {
            self.total = bootproto::record::value(rest, "total").and_then(|t| t.parse().ok());
            if bootproto::record::value(rest, "det") == Some("no") {
                eprintln!("note: the image has no deterministic versions: pthread times only");
            }
        } else if let Some(row) = parse_bench(line) {
            self.done += 1;
            eprintln!(
                "[{}/{}] {:>7} {:>8} N={} {} ({:.0}s)",
                self.done,
                self.total.map_or("?".into(), |t| t.to_string()),
                row["demo"],
                get(&row, "size"),
                get(&row, "cpus"),
                summary(&row),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn get<'a>(row: &'a Row, key: &str) -> &'a str {
    row.get(key).map_or("-", String::as_str)
}

fn num(row: &Row, key: &str) -> Option<f64> {
    row.get(key)?.parse().ok()
}

/// One measurement in words.
fn summary(row: &Row) -> String {
    if let Some(e) = row.get("error") {
        return format!("ERROR {e}");
    }
    let mut s = format!("pthread {} ms", get(row, "pthread_ms"));
    match row.get("det").map(String::as_str) {
        Some("ok") => {
            let _ = write!(
                s,
                ", det {} ms, ratio {}{}",
                get(row, "det_ms"),
                get(row, "ratio"),
                if get(row, "match") == "yes" {
                    ""
                } else {
                    " (HASHES DIFFER)"
                }
            );
        }
        Some(other) => {
            let _ = write!(s, ", det {other}");
        }
        None => {}
    }
    s
}

/// The thesis's det ÷ pthread ratio (Tables 4 and 5, §5.1.2) for a demo,
/// size and N, if it measured that point.
pub fn thesis(demo: &str, size: u64, n: u32) -> Option<f64> {
    // (size, [N=1, N=2, N=4, N=8]); NaN where the thesis has no figure.
    const LU: &[(u64, [f64; 4])] = &[
        (16, [23.7, 27.3, 33.3, 25.5]),
        (32, [23.3, 26.6, 30.4, 24.4]),
        (64, [22.2, 26.5, 33.2, 24.9]),
        (128, [15.4, 22.4, 28.6, 27.2]),
        (256, [5.3, 11.7, 14.1, 14.9]),
        (512, [1.8, 4.0, 6.3, 5.8]),
        (1024, [1.2, 1.5, 2.1, 1.8]),
        (2048, [1.0, 1.1, 1.2, 1.1]),
    ];
    const MATMULT: &[(u64, [f64; 4])] = &[
        (16, [14.1, 33.9, 30.7, 24.9]),
        (32, [14.3, 29.7, 26.3, 20.1]),
        (64, [10.7, 26.3, 33.9, 24.0]),
        (128, [4.1, 14.6, 21.6, 24.1]),
        (256, [1.5, 4.0, 7.9, 8.2]),
        (512, [1.1, 1.5, 2.6, 2.3]),
        (1024, [2.6, 0.9, 0.6, 0.7]),
    ];
    const QSORT: &[(u64, [f64; 4])] = &[
        (1_000, [27.51, 39.22, 24.14, 17.38]),
        (4_000, [14.07, 46.84, 37.86, 20.80]),
        (8_000, [8.57, 28.73, 31.38, 23.13]),
        (10_000, [7.37, 21.17, 30.60, 26.58]),
        (40_000, [2.52, 8.43, 13.41, 16.80]),
        (80_000, [1.73, 4.31, 8.37, 10.57]),
        (100_000, [1.61, 3.10, 7.57, 11.08]),
        (400_000, [1.17, 1.80, 2.20, 2.70]),
        (800_000, [1.11, 1.41, 1.63, 1.65]),
        (1_000_000, [1.10, 1.36, 1.52, 1.75]),
        (4_000_000, [1.07, 1.22, 1.26, 1.35]),
        (8_000_000, [1.04, 1.05, 1.22, 1.36]),
        (10_000_000, [1.04, 1.01, 1.11, 1.31]),
        (40_000_000, [1.04, 1.09, 1.18, 1.27]),
        (80_000_000, [1.03, 1.15, 1.16, 1.30]),
    ];
    const MD5: &[(u64, [f64; 4])] = &[(0, [1.17, f64::NAN, f64::NAN, 1.06])];
    let (table, size) = match demo {
        "lu" => (LU, size),
        "matmult" => (MATMULT, size),
        "qsort" => (QSORT, size),
        // The thesis gives md5 one size (its own); any size compares.
        "md5" => (MD5, 0),
        _ => return None,
    };
    let col = match n {
        1 => 0,
        2 => 1,
        4 => 2,
        8 => 3,
        _ => return None,
    };
    table
        .iter()
        .find(|(s, _)| *s == size)
        .map(|(_, r)| r[col])
        .filter(|v| !v.is_nan())
}

/// The fixed CSV columns; `det_*` keys the deterministic demo added follow.
const COLUMNS: &[&str] = &[
    "demo",
    "size",
    "cpus",
    "reps",
    "method",
    "pthread_ms",
    "det_ms",
    "ratio",
    "thesis_ratio",
    "match",
    "det",
    "ok",
    "hash",
    "pthread_start_ms",
    "det_start_ms",
    "merge_pct",
    "error",
];

fn with_thesis(rows: &[Row]) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            let size = num(&r, "size").unwrap_or(0.0) as u64;
            let n = num(&r, "cpus").unwrap_or(0.0) as u32;
            if let Some(t) = thesis(get(&r, "demo"), size, n) {
                r.insert("thesis_ratio".into(), format!("{t}"));
            }
            r
        })
        .collect()
}

fn csv(rows: &[Row]) -> String {
    let extra: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.keys().map(String::as_str))
        .filter(|k| !COLUMNS.contains(k))
        .collect();
    let cols: Vec<&str> = COLUMNS.iter().copied().chain(extra).collect();
    let mut o = cols.join(",") + "\n";
    for r in rows {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                let v = r.get(*c).map_or("", String::as_str);
                if v.contains([',', '"', '\n']) {
                    format!("\"{}\"", v.replace('"', "\"\""))
                } else {
                    v.to_string()
                }
            })
            .collect();
        o.push_str(&cells.join(","));
        o.push('\n');
    }
    o
}

fn json_rows(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let m: serde_json::Map<String, Value> = r
                .iter()
                .map(|(k, v)| {
                    let typed = match (v.parse::<i64>(), v.parse::<f64>()) {
                        _ if k == "hash" => json!(v),
                        (Ok(i), _) => json!(i),
                        (_, Ok(x)) if x.is_finite() => json!(x),
                        _ => json!(v),
                    };
                    (k.clone(), typed)
                })
                .collect();
            Value::Object(m)
        })
        .collect()
}

/// The printed table: per demo, each size and N with the thesis beside.
fn table(rows: &[Row]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<8} {:>9} {:>2} {:>6} {:>12} {:>12} {:>8} {:>7} {:>8}  match",
        "demo", "size", "N", "reps", "pthread ms", "det ms", "det÷pth", "merge", "thesis"
    );
    for r in rows {
        let thesis = r
            .get("thesis_ratio")
            .map_or("-".to_string(), |t| format!("{t}×"));
        let ratio = r.get("ratio").map_or("-".to_string(), |t| format!("{t}×"));
        let det_ms = match (r.get("det_ms"), r.get("det")) {
            (Some(ms), _) => ms.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "-".into(),
        };
        let merge = r
            .get("merge_pct")
            .map_or("-".to_string(), |m| format!("({m}%)"));
        let _ = writeln!(
            o,
            "{:<8} {:>9} {:>2} {:>6} {:>12} {:>12} {:>8} {:>7} {:>8}  {}",
            get(r, "demo"),
            get(r, "size"),
            get(r, "cpus"),
            get(r, "reps"),
            get(r, "pthread_ms"),
            det_ms,
            ratio,
            merge,
            thesis,
            match r.get("error") {
                Some(e) => format!("ERROR {e}"),
                None => get(r, "match").to_string(),
            }
        );
    }
    let memcpy: Vec<f64> = rows
        .iter()
        .filter_map(|r| num(r, "memcpy_ms_per_mib"))
        .collect();
    if let (Some(lo), Some(hi)) = (
        memcpy.iter().copied().reduce(f64::min),
        memcpy.iter().copied().reduce(f64::max),
    ) {
        let range = if hi > lo {
            format!("{lo:.2}–{hi:.2}")
        } else {
            format!("{lo:.2}")
        };
        let _ = writeln!(
            o,
            "guest memcpy {range} ms per MiB over these rows: the det rows, \
             which copy pages on write, grow with it (docs/benchmarks.md, \"Memory speed\")"
        );
    }
    o
}

/// One line per N of `key` against size.
fn per_n(rows: &[&Row], ns: &BTreeSet<u32>, key: &str) -> Vec<Series> {
    ns.iter()
        .map(|&n| {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| num(r, "cpus") == Some(n as f64))
                .filter_map(|r| Some((num(r, "size")?, num(r, key)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: format!("N={n}"),
                points,
                dashed: false,
            }
        })
        .collect()
}

/// Charts (file stem, chart) for each demo with more than one size:
/// det ÷ pthread by size, one line per N, the thesis's beside (pthread
/// time when no det ran); and the share of the det run spent in merge.
fn charts(rows: &[Row]) -> Vec<(String, Chart)> {
    let demos: BTreeSet<&str> = rows.iter().map(|r| get(r, "demo")).collect();
    let mut out = Vec::new();
    for demo in demos {
        let mine: Vec<&Row> = rows.iter().filter(|r| get(r, "demo") == demo).collect();
        let sizes: BTreeSet<u64> = mine
            .iter()
            .filter_map(|r| num(r, "size"))
            .map(|s| s as u64)
            .collect();
        if sizes.len() < 2 {
            continue;
        }
        let overhead = mine.iter().any(|r| r.contains_key("ratio"));
        let key = if overhead { "ratio" } else { "pthread_ms" };
        let ns: BTreeSet<u32> = mine
            .iter()
            .filter_map(|r| num(r, "cpus"))
            .map(|n| n as u32)
            .collect();
        let mut series = per_n(&mine, &ns, key);
        if overhead {
            for &n in &ns {
                let points: Vec<(f64, f64)> = sizes
                    .iter()
                    .filter_map(|&s| Some((s as f64, thesis(demo, s, n)?)))
                    .collect();
                if points.len() >= 2 {
                    series.push(Series {
                        name: format!("thesis N={n}"),
                        points,
                        dashed: true,
                    });
                }
            }
        }
        let x_label = match demo {
            "qsort" => "elements",
            "md5" => "string length",
            _ => "matrix side",
        };
        out.push((
            format!("overhead-{demo}"),
            Chart {
                title: if overhead {
                    format!("{demo}: deterministic overhead")
                } else {
                    format!("{demo}: pthread time per repetition (no det)")
                },
                x_label: x_label.into(),
                y_label: if overhead {
                    "det ÷ pthread (×)".into()
                } else {
                    "ms per repetition".into()
                },
                series,
                reference: overhead.then_some(1.0),
            },
        ));
        let merge = per_n(&mine, &ns, "merge_pct");
        if overhead && merge.iter().any(|s| !s.points.is_empty()) {
            out.push((
                format!("merge-{demo}"),
                Chart {
                    title: format!("{demo}: time in merge"),
                    x_label: x_label.into(),
                    y_label: "% of the det run".into(),
                    series: merge,
                    reference: None,
                },
            ));
        }
    }
    out
}

/// Writes the files derived from `rows`; with `guest` (a fresh
/// measurement, not `--replot`) also `results.json`, their record.
fn write_outputs(project: &Project, dir: &Path, rows: &[Row], guest: Option<Value>) -> Result<()> {
    fs::create_dir_all(dir)?;
    let rows = with_thesis(rows);
    let mut written = Vec::new();
    if let Some(guest) = guest {
        let json = json!({ "guest": guest, "results": json_rows(&rows) });
        write_atomic(
            &dir.join("results.json"),
            (serde_json::to_string_pretty(&json)? + "\n").as_bytes(),
        )?;
        written.push("results.json".to_string());
    }
    write_atomic(&dir.join("results.csv"), csv(&rows).as_bytes())?;
    let table = table(&rows);
    write_atomic(&dir.join("table.txt"), table.as_bytes())?;
    written.extend(["results.csv".to_string(), "table.txt".to_string()]);
    for (stem, chart) in charts(&rows) {
        let svg = format!("{stem}.svg");
        let png = format!("{stem}.png");
        write_atomic(&dir.join(&svg), plot::svg(&chart).as_bytes())?;
        write_atomic(&dir.join(&png), &plot::png(&chart))?;
        written.extend([svg, png]);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(table.as_bytes());
    let _ = stdout.flush();
    eprintln!("wrote {}/{{{}}}", project.show(dir), written.join(","));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"BENCH demo=lu size=64 cpus=2 reps=40 method=diff pthread_ms=12.5 det_ms=30.1 ratio=2.408 match=yes det=ok hash=00ab ok=yes merge_pct=12.5 det_merge_pages=12"#;

    #[test]
    fn bench_lines_parse_with_quoted_values() {
        let r = parse_bench(LINE).unwrap();
        assert_eq!(r["demo"], "lu");
        assert_eq!(r["ratio"], "2.408");
        assert_eq!(r["det_merge_pages"], "12");
        let e = parse_bench(
            r#"BENCH demo=md5 size=3 cpus=1 error="det md5: exit status: 1: no such file""#,
        )
        .unwrap();
        assert_eq!(e["error"], "det md5: exit status: 1: no such file");
        assert!(parse_bench("BENCH-PLAN total=3").is_none());
        assert!(parse_bench("noise").is_none());
        assert!(parse_bench(r#"BENCH demo=x error="unterminated"#).is_none());
    }

    #[test]
    fn thesis_figures_are_looked_up_by_size_and_n() {
        assert_eq!(thesis("lu", 16, 1), Some(23.7));
        assert_eq!(thesis("matmult", 1024, 2), Some(0.9));
        assert_eq!(thesis("qsort", 1_000_000, 1), Some(1.10));
        assert_eq!(thesis("md5", 4, 1), Some(1.17));
        assert_eq!(thesis("md5", 4, 2), None);
        assert_eq!(thesis("matmult", 2048, 1), None);
        assert_eq!(thesis("lu", 16, 3), None);
    }

    #[test]
    fn outputs_have_fixed_columns_and_typed_json() {
        let rows = with_thesis(&[parse_bench(LINE).unwrap()]);
        let c = csv(&rows);
        let mut lines = c.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with("demo,size,cpus,reps,method,pthread_ms,det_ms,ratio,thesis_ratio,")
        );
        assert!(header.ends_with(",det_merge_pages"));
        assert!(lines
            .next()
            .unwrap()
            .starts_with("lu,64,2,40,diff,12.5,30.1,2.408,26.5,"));
        let j = json_rows(&rows);
        assert_eq!(j[0]["ratio"], json!(2.408));
        assert_eq!(j[0]["hash"], json!("00ab"));
        assert_eq!(j[0]["size"], json!(64));
        assert_eq!(json_text(&json!(64.0)), "64");
        assert_eq!(json_text(&json!(2.408)), "2.408");
        assert_eq!(json_text(&json!("diff")), "diff");
        assert!(table(&rows).contains("26.5×"));
        assert!(table(&rows).contains("(12.5%)"));
    }

    #[test]
    fn the_table_gives_the_rows_memory_speed() {
        assert!(!table(&[parse_bench(LINE).unwrap()]).contains("memcpy"));
        let one = parse_bench(&format!("{LINE} memcpy_ms_per_mib=0.5")).unwrap();
        assert!(table(&[one]).contains("guest memcpy 0.50 ms per MiB"));
        let rows: Vec<Row> = ["0.52", "2.10"]
            .iter()
            .map(|m| parse_bench(&format!("{LINE} memcpy_ms_per_mib={m}")).unwrap())
            .collect();
        assert!(table(&rows).contains("guest memcpy 0.52–2.10 ms per MiB"));
    }

    #[test]
    fn charts_need_two_sizes_and_fall_back_to_pthread_time() {
        let mut a = parse_bench(LINE).unwrap();
        let mut b = a.clone();
        b.insert("size".into(), "128".into());
        assert_eq!(charts(&[a.clone()]).len(), 0);
        let c = charts(&[a.clone(), b.clone()]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, "overhead-lu");
        assert_eq!(c[0].1.series.len(), 2, "N=2 and the thesis's N=2");
        assert_eq!(c[1].0, "merge-lu");
        assert_eq!(c[1].1.series[0].points, [(64.0, 12.5), (128.0, 12.5)]);
        for r in [&mut a, &mut b] {
            r.remove("ratio");
        }
        let c = charts(&[a, b]);
        assert!(c[0].1.title.contains("pthread time"));
        assert!(c[0].1.reference.is_none());
    }

    #[test]
    fn plans_filter_by_demo_and_reject_junk() {
        let mut o = Args {
            profile: "bench".into(),
            quick: true,
            plan: vec![],
            demos: vec!["lu".into()],
            n: vec![],
            min_secs: None,
            trials: 1,
            replot: false,
            boot: BootOpts {
                accel: None,
                cpus: None,
                timeout: None,
            },
        };
        assert_eq!(plan(&o).unwrap(), vec!["lu:16,64,256".to_string()]);
        o.demos = vec!["nope".into()];
        assert!(plan(&o).is_err());
        o.demos.clear();
        o.plan = vec!["lu:16,x".into()];
        assert!(plan(&o).is_err());
    }
}
