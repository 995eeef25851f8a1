//! `tour`: what `det.run=demos` (and `cargo det demo`) shows.
//!
//! ```text
//! tour [DEMO...]      (default: gauss md5 qsort matmult lu)
//! ```
//!
//! gauss first, the thesis's §5.2 bug: the pthread version run several
//! times gives different results, the deterministic version always the
//! same wrong one, the fixed version the right one. Then each benchmark
//! demo: the deterministic version run several times gives one hash, the
//! same as the pthread version's. Exit status 1 if a deterministic demo
//! gives more than one hash or disagrees with pthread, or a run fails.

use det_demos_harness::{args, distinct, online_cpus, run, Demo, Impl, Run};

const PTHREAD_GAUSS_RUNS: usize = 8;
const DET_RUNS: usize = 3;

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let demos: Vec<Demo> = if names.is_empty() {
        vec![Demo::Gauss, Demo::Md5, Demo::Qsort, Demo::Matmult, Demo::Lu]
    } else {
        match names
            .iter()
            .map(|n| Demo::from_name(n))
            .collect::<Option<Vec<_>>>()
        {
            Some(d) => d,
            None => {
                eprintln!("usage: tour [gauss|md5|qsort|matmult|lu]...");
                std::process::exit(2);
            }
        }
    };
    let det = Impl::Det.installed();
    if !det {
        println!("note: the deterministic versions (demo-det, detrun) are not in this image;");
        println!("      showing the pthread versions only.");
    }
    let mut good = true;
    for demo in demos {
        let result = if demo == Demo::Gauss {
            gauss(det)
        } else {
            benchmark(demo, det)
        };
        if let Err(e) = result {
            println!("  FAILED: {e}");
            good = false;
        }
        println!();
    }
    std::process::exit(i32::from(!good));
}

fn runs(imp: Impl, a: &[String], count: usize) -> Result<Vec<Run>, String> {
    (0..count).map(|_| run(imp, a)).collect()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(8)]
}

/// "1 distinct result (8 runs)" plus each hash with its count and verdict.
fn summary(runs: &[Run]) -> String {
    let d = distinct(runs);
    let list: Vec<String> = d
        .iter()
        .map(|(h, n)| {
            let ok = runs.iter().find(|r| &r.hash == h).is_some_and(|r| r.ok);
            format!("{}×{n} {}", short(h), if ok { "right" } else { "WRONG" })
        })
        .collect();
    format!(
        "{} distinct result{} in {} runs: {}",
        d.len(),
        if d.len() == 1 { "" } else { "s" },
        runs.len(),
        list.join(", ")
    )
}

fn gauss(det: bool) -> Result<(), String> {
    let n = online_cpus();
    let size = Demo::Gauss.default_size();
    println!("gauss: Gaussian elimination, {size} rows, a worker per row and step, and the");
    println!("thesis's bug (Figure 4): each step joins all workers but the last one.");
    let buggy = args(Demo::Gauss, size, n, 1, false);
    let fixed = args(Demo::Gauss, size, n, 1, true);
    let p = runs(Impl::Pthread, &buggy, PTHREAD_GAUSS_RUNS)?;
    println!("  pthread:         {}", summary(&p));
    let pf = runs(Impl::Pthread, &fixed, 2)?;
    println!("  pthread --fixed: {}", summary(&pf));
    if !det {
        return Ok(());
    }
    let d = runs(Impl::Det, &buggy, DET_RUNS)?;
    println!("  det:             {}", summary(&d));
    let df = runs(Impl::Det, &fixed, 2)?;
    println!("  det --fixed:     {}", summary(&df));
    let wrong_rows = d[0].value("wrong_rows").unwrap_or("?");
    if distinct(&d).len() != 1 || d[0].ok {
        return Err("det gauss must give one wrong result every time".into());
    }
    if distinct(&df).len() != 1 || !df[0].ok || df[0].hash != pf[0].hash {
        return Err("det gauss --fixed must give the right result every time".into());
    }
    println!("  => det: the same wrong answer every run ({wrong_rows} row never merged: the");
    println!(
        "     forgotten worker's changes stay private); the pthread result depends on timing."
    );
    Ok(())
}

fn benchmark(demo: Demo, det: bool) -> Result<(), String> {
    let n = online_cpus();
    let size = demo.default_size();
    let what = match demo {
        Demo::Md5 => format!(
            "brute-force search for a string of {size} letters by its MD5, {} workers",
            n + 1
        ),
        Demo::Qsort => format!(
            "parallel quicksort of {size} numbers, forking {} levels deep",
            demos_core::sort::fork_depth(n)
        ),
        Demo::Matmult => format!("{size}×{size} matrix multiply, a worker per block of 64"),
        Demo::Lu => format!("{size}×{size} blocked LU decomposition, a worker per block of 256"),
        Demo::Gauss => unreachable!(),
    };
    println!("{}: {what}", demo.name());
    let a = args(demo, size, n, 1, false);
    let p = run(Impl::Pthread, &a)?;
    println!(
        "  pthread: hash {} ({}) in {:.2}s",
        short(&p.hash),
        if p.ok { "checked" } else { "WRONG" },
        p.elapsed.as_secs_f64()
    );
    if !det {
        return Ok(());
    }
    let d = runs(Impl::Det, &a, DET_RUNS)?;
    let secs: Vec<String> = d
        .iter()
        .map(|r| format!("{:.2}s", r.elapsed.as_secs_f64()))
        .collect();
    println!("  det:     {} ({})", summary(&d), secs.join(" "));
    if distinct(&d).len() != 1 || d[0].hash != p.hash || !d[0].ok {
        return Err(format!(
            "{}: det must give one right hash, the pthread one",
            demo.name()
        ));
    }
    Ok(())
}
