//! `persist`: counts its runs in `/count` and, from a child, logs each run
//! in `/history`; with `detrun --fs IMAGE` both survive across runs.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use determ::{fork, println, with_fs};

determ::main!(run);

fn run() -> i32 {
    let n = with_fs(|fs| {
        let n: u64 = match fs.read_all("/count") {
            Ok(b) => core::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            Err(_) => {
                fs.create("/count").expect("create");
                0
            }
        } + 1;
        fs.truncate("/count", 0).expect("truncate");
        fs.write("/count", 0, format!("{n}\n").as_bytes())
            .expect("write");
        n
    });
    fork(move || {
        with_fs(|fs| {
            if fs.lookup("/history").is_err() {
                fs.create("/history").expect("create");
            }
            fs.append("/history", format!("run {n}\n").as_bytes())
                .expect("append");
        });
        0
    })
    .expect("fork")
    .join()
    .expect("join");
    let h = with_fs(|fs| fs.read_all("/history")).expect("read");
    println!(
        "count = {n}, history lines = {}",
        h.iter().filter(|&&c| c == b'\n').count()
    );
    0
}
