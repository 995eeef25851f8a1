//! `libdeterm`: deterministic programs run through `detrun`: startup,
//! fork/join trees, reused children, heap merge, exit status, exec, a merge conflict named by
//! symbol, file-system reconciliation and scope, persistence and corrupt
//! images, the same output over many runs on 1 and 2 CPUs, and a C program
//! built against `determ.h`. The programs are in `/usr/lib/detlinux/det-progs/`
//! (built from `userland/det-progs`).

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use det_guest_tests::sys;
use ktap::{ensure, Test, TestResult};

const DETRUN: &str = "/usr/bin/detrun";
const DIR: &str = "/usr/lib/detlinux/det-progs";
const PROGRAMS: &[&str] = &[
    "hello",
    "forkjoin",
    "heapmerge",
    "exitstatus",
    "conflict",
    "fsjoin",
    "fsscope",
    "persist",
    "execer",
    "detsum",
    "stdin",
    "cforkjoin",
    "primes",
    "heapsoak",
    "forkbench",
    "reuse",
];

const TESTS: &[(&str, Test)] = &[
    ("detrun_help", detrun_help),
    ("programs_have_no_undefined_symbols", no_undefined_symbols),
    ("hello_world", hello_world),
    ("fork_join_tree", fork_join_tree),
    ("reused_children_start_from_the_parent", reused_children),
    ("heap_merge", heap_merge),
    ("exit_status_and_child_panic", exit_status),
    ("root_panic_reported", root_panic),
    ("conflict_names_the_symbol", conflict_names_the_symbol),
    ("fs_reconciled_across_children", fs_reconciled),
    ("fs_scope_defers_output_and_refuses_nesting", fs_scope),
    ("persistence_round_trip", persistence),
    ("corrupt_image_rejected", corrupt_image_rejected),
    ("exec_from_the_file_system", exec),
    ("stdin_fed_to_a_child", stdin),
    ("c_program_with_determ_h", c_program),
    ("guide_rust_example", guide_example),
    ("same_output_20_runs_1_and_2_cpus", same_output),
];

fn main() {
    ktap::run("libdeterm", TESTS)
}

/// What a detrun run gave.
struct Run {
    code: i32,
    out: String,
    err: String,
    took: Duration,
}

/// Runs detrun with `args`, `input` on its stdin, at most 120 s (times
/// the guest's speed factor).
fn detrun(args: &[&str], input: &[u8]) -> Result<Run, String> {
    let limit = det_guest_tests::scaled_limit(Duration::from_secs(120));
    let started = Instant::now();
    let mut child = Command::new(DETRUN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{DETRUN}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(input)
        .map_err(|e| format!("writing detrun's stdin: {e}"))?;
    drop(stdin);
    // Both pipes are drained by threads, so the wait below, and with it
    // the time limit, starts at once rather than when stdout closes.
    fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    }
    let out = drain(child.stdout.take().ok_or("no stdout")?);
    let err = drain(child.stderr.take().ok_or("no stderr")?);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return Ok(Run {
                    code: st.code().unwrap_or(-1),
                    out: out.join().unwrap_or_default(),
                    err: err.join().unwrap_or_default(),
                    took: started.elapsed(),
                });
            }
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                return Err(format!(
                    "TIMEOUT: detrun {args:?} did not finish in {:.0} s",
                    limit.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for detrun: {e}")),
        }
    }
}

fn prog(name: &str) -> String {
    format!("{DIR}/{name}")
}

/// Runs program `name` and requires exit status `code`.
fn expect(name: &str, args: &[&str], code: i32) -> Result<Run, String> {
    let p = prog(name);
    let mut all = vec![p.as_str()];
    all.extend_from_slice(args);
    let r = detrun(&all, b"")?;
    if r.code != code {
        return Err(format!(
            "{name} {args:?} exited with {}, not {code}; stdout {:?}, stderr {:?}",
            r.code, r.out, r.err
        ));
    }
    Ok(r)
}

fn has(r: &Run, what: &str) -> Result<(), String> {
    if r.out.contains(what) {
        Ok(())
    } else {
        Err(format!(
            "output lacks {what:?}: {:?} (stderr {:?})",
            r.out, r.err
        ))
    }
}

fn detrun_help() -> TestResult {
    let r = detrun(&["--help"], b"")?;
    ensure!(
        r.code == 0 && r.out.contains("Usage: detrun"),
        "--help: {} {:?}",
        r.code,
        r.out
    );
    let r = detrun(&[], b"")?;
    ensure!(
        r.code == 2 && r.err.contains("no PROGRAM"),
        "no program: {} {:?}",
        r.code,
        r.err
    );
    let r = detrun(&["/nonexistent"], b"")?;
    ensure!(
        r.code == 2 && r.err.contains("/nonexistent"),
        "missing: {} {:?}",
        r.code,
        r.err
    );
    Ok(())
}

fn no_undefined_symbols() -> TestResult {
    for name in PROGRAMS {
        let bytes = std::fs::read(prog(name)).map_err(|e| format!("{name}: {e}"))?;
        let undef = determ::elf::undefined(&bytes).map_err(|e| format!("{name}: {e}"))?;
        ensure!(undef.is_empty(), "{name} has undefined symbols: {undef:?}");
        determ::elf::parse(&bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

fn hello_world() -> TestResult {
    let r = expect("hello", &["a b", "c"], 0)?;
    let want = format!(
        "hello from a deterministic process\narg 0: {}\narg 1: a b\narg 2: c\nPATH=/bin\n",
        prog("hello")
    );
    ensure!(r.out == want, "output {:?}, expected {want:?}", r.out);
    ktap::diag(&format!("hello via detrun: {} ms", r.took.as_millis()));
    Ok(())
}

fn fork_join_tree() -> TestResult {
    let r = expect("forkjoin", &[], 0)?;
    let divide: u64 = (0..20000u64).map(|x| x * x % 1009).sum();
    has(&r, "tree: 40 nodes, index sum 780\n")?;
    has(&r, "scoped: [0, 1, 4, 9, 16, 25]\n")?;
    has(
        &r,
        "divide_at: 16384 filled, right: true, parent's half seen: 0, \
         child's half seen: 0\n",
    )?;
    has(
        &r,
        "divide_at, failed child: join failed: true, half kept: true\n",
    )?;
    has(&r, &format!("divide: {divide}\n"))?;
    ktap::diag(&format!(
        "forkjoin (40-process tree + 6 scoped + divide): {} ms",
        r.took.as_millis()
    ));
    Ok(())
}

fn reused_children() -> TestResult {
    let r = expect("reuse", &[], 0)?;
    has(
        &r,
        "sequential: 300 children, 0 wrong, table intact: true\n",
    )?;
    has(&r, "nested: true\n")?;
    has(
        &r,
        "left one: 4, panicked: true, scoped: [0, 1, 4, 9, 16, 25, 36, 49]\n",
    )?;
    for i in 0..8 {
        has(&r, &format!("scoped child {i}\n"))?;
    }
    has(&r, "rounding: parent 0x99, child 0x99, nearest 0x9a\n")?;
    ktap::diag(&format!(
        "reuse (350 forks, 80 nested): {} ms",
        r.took.as_millis()
    ));
    Ok(())
}

fn heap_merge() -> TestResult {
    let r = expect("heapmerge", &[], 0)?;
    has(&r, "children's blocks counted live: true")?;
    has(&r, "heap intact: true")?;
    for i in 0..4u64 {
        let sum = (0..20_000u64).sum::<u64>() * (i + 1);
        has(&r, &format!("child {i} made 20000 numbers, sum {sum}\n"))?;
    }
    Ok(())
}

fn exit_status() -> TestResult {
    let r = expect("exitstatus", &["42"], 42)?;
    has(&r, "child exited with 7\n")?;
    has(&r, "panicked at")?;
    has(&r, "boom in the child")?;
    Ok(())
}

fn root_panic() -> TestResult {
    let r = expect("exitstatus", &["0", "panic"], 128 + 4)?;
    ensure!(
        r.err.contains("the root panics on request") && r.err.contains("SIGILL"),
        "stderr {:?}",
        r.err
    );
    // Output written before the panic is still shown.
    has(&r, "child exited with 7\n")?;
    Ok(())
}

fn conflict_names_the_symbol() -> TestResult {
    let r = expect("conflict", &[], 3)?;
    has(&r, "merge conflict joining child 2")?;
    has(&r, "(COUNTER)")?;
    let r = expect("conflict", &["panic"], 128 + 4)?;
    ensure!(
        r.err.contains("COUNTER") && r.err.contains("child 2"),
        "detrun's report lacks the symbol or child: {:?}",
        r.err
    );
    Ok(())
}

fn fs_reconciled() -> TestResult {
    let r = expect("fsjoin", &[], 0)?;
    let want = "child 0 wrote /out/child0\nchild 1 wrote /out/child1\nchild 2 wrote /out/child2\n\
                child 3 wrote /out/child3\n/out: child0 child1 child2 child3\n\
                /shared/log: \"root\\nchild 0\\nchild 1\\nchild 2\\nchild 3\\n\"\n";
    ensure!(
        r.out.starts_with(want),
        "output {:?}, expected it to start {want:?}",
        r.out
    );
    has(&r, "/shared/cfg")?;
    has(&r, "changed on both sides")?;
    has(&r, "/shared/cfg: AAAA")?;
    has(&r, "late: joining child")?;
    has(
        &r,
        "late: /out: c2 c3-saw-PPPPinal child0 child1 child2 child3; /shared/cfg: PPPPinal+c3",
    )?;
    Ok(())
}

fn fs_scope() -> TestResult {
    let r = expect("fsscope", &[], 0)?;
    let want = "inside the scope\nafter the scope: /a has 5 bytes\nchild: inside the scope\n\
                child: after the scope\njoined: /a has 8 bytes\n";
    ensure!(r.out == want, "output {:?}, expected {want:?}", r.out);
    ensure!(
        r.err == "inside the scope, on stderr\n",
        "stderr {:?}",
        r.err
    );
    for what in ["nested", "fork"] {
        let r = expect("fsscope", &[what], 128 + 4)?;
        ensure!(
            r.err.contains("the file system is in use") && r.out.is_empty(),
            "{what}: stdout {:?}, stderr {:?}",
            r.out,
            r.err
        );
    }
    let r = expect("fsscope", &["panic"], 128 + 4)?;
    ensure!(
        r.out == "printed before the panic\n" && r.err.contains("panic inside with_fs"),
        "panic: stdout {:?}, stderr {:?}",
        r.out,
        r.err
    );
    Ok(())
}

fn persistence() -> TestResult {
    let img = "/tmp/libdeterm-persist.img";
    let _ = std::fs::remove_file(img);
    for n in 1..=3 {
        let r = detrun(&["--fs", img, &prog("persist")], b"")?;
        ensure!(r.code == 0, "run {n}: {} {:?}", r.code, r.err);
        has(&r, &format!("count = {n}, history lines = {n}\n"))?;
    }
    let size = std::fs::metadata(img).map_err(|e| e.to_string())?.len();
    ktap::diag(&format!("image after 3 runs: {size} bytes"));
    Ok(())
}

fn corrupt_image_rejected() -> TestResult {
    let img = "/tmp/libdeterm-corrupt.img";
    let _ = std::fs::remove_file(img);
    let r = detrun(&["--fs", img, &prog("persist")], b"")?;
    ensure!(r.code == 0, "making the image: {:?}", r.err);
    let good = std::fs::read(img).map_err(|e| e.to_string())?;
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    for (what, bytes) in [
        ("flipped byte", bad),
        ("truncated", good[..good.len() - 100].to_vec()),
    ] {
        std::fs::write(img, &bytes).map_err(|e| e.to_string())?;
        let r = detrun(&["--fs", img, &prog("persist")], b"")?;
        ensure!(r.code == 2, "{what}: exit {} (stderr {:?})", r.code, r.err);
        ensure!(
            r.err.contains(img) && r.err.contains("left unchanged"),
            "{what}: unclear error {:?}",
            r.err
        );
        ensure!(r.out.is_empty(), "{what}: the program ran: {:?}", r.out);
        let after = std::fs::read(img).map_err(|e| e.to_string())?;
        ensure!(after == bytes, "{what}: the image was changed");
        ktap::diag(&format!("{what}: {}", r.err.trim()));
    }
    Ok(())
}

fn exec() -> TestResult {
    let add = format!("/bin/hello={}", prog("hello"));
    let r = detrun(&["--add", &add, &prog("execer")], b"")?;
    ensure!(r.code == 0, "exit {} {:?} {:?}", r.code, r.out, r.err);
    let want = "execer: starting /bin/hello\nhello from a deterministic process\narg 0: hello\n\
                arg 1: from-exec\nPATH=/bin\nexecer: hello exited with 0\n";
    ensure!(
        r.out.starts_with(want),
        "output {:?}, expected it to start {want:?}",
        r.out
    );
    has(&r, "execer: /bin/missing: ")?;
    Ok(())
}

fn stdin() -> TestResult {
    let r = detrun(&[&prog("stdin")], b"hello, stdin\nline two\n")?;
    ensure!(r.code == 0, "exit {} {:?}", r.code, r.err);
    has(&r, "22 bytes: HELLO, STDIN\nLINE TWO\n")?;
    Ok(())
}

fn c_program() -> TestResult {
    let r = expect("cforkjoin", &["x"], 0)?;
    let n = 4000u64;
    let sum = (n - 1) * n * (2 * n - 1) / 6;
    let want = format!(
        "child 0 filled 1000 entries\nchild 1 filled 1000 entries\nchild 2 filled 1000 entries\n\
         child 3 filled 1000 entries\n{}: argc 2, sum {sum}, statuses 46\n",
        prog("cforkjoin")
    );
    ensure!(r.out == want, "output {:?}, expected {want:?}", r.out);
    Ok(())
}

fn guide_example() -> TestResult {
    let r = expect("primes", &["100000"], 0)?;
    let want = "part 0: 2762 primes in [0, 25000)\npart 1: 2371 primes in [25000, 50000)\n\
                part 2: 2260 primes in [50000, 75000)\npart 3: 2199 primes in [75000, 100000)\n\
                9592 primes below 100000\n";
    ensure!(r.out == want, "output {:?}, expected {want:?}", r.out);
    Ok(())
}

fn same_output() -> TestResult {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut first: Option<String> = None;
    for (label, set) in [("2 CPUs", vec![0, 1]), ("1 CPU", vec![0])] {
        if set.len() > cpus {
            ktap::diag(&format!(
                "only {cpus} CPU(s): {label} runs on what there is"
            ));
        }
        sys::set_affinity(&set[..set.len().min(cpus)])?;
        let mut total = Duration::ZERO;
        for run in 0..20 {
            let r = expect("detsum", &[], 0)?;
            total += r.took;
            match &first {
                None => first = Some(r.out.clone()),
                Some(f) => ensure!(
                    *f == r.out,
                    "{label}, run {run}: output differs:\n{f:?}\nvs\n{:?}",
                    r.out
                ),
            }
        }
        ktap::diag(&format!(
            "detsum on {label}: 20 identical runs, {} ms each",
            total.as_millis() / 20
        ));
    }
    sys::set_affinity(&(0..cpus).collect::<Vec<_>>())?;
    let out = first.unwrap_or_default();
    ensure!(out.contains("digest "), "no digest: {out:?}");
    ktap::diag(&format!("detsum {}", out.lines().last().unwrap_or("")));
    Ok(())
}
