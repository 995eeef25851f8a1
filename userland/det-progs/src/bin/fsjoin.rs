//! `fsjoin`: children create files and append to a shared log; the parent
//! sees all of it after the joins, appends in join order. Two children
//! rewriting one file is a conflict naming the path. Forks on either side
//! of a parent's own file change each join against the files they started
//! from (the forks before it share one reference, the ones after another).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use determ::{fork, parallel_for, println, with_fs};

determ::main!(run);

fn run() -> i32 {
    with_fs(|fs| {
        fs.mkdir("/out").expect("mkdir");
        fs.mkdir("/shared").expect("mkdir");
        fs.create("/shared/log").expect("create");
        fs.append("/shared/log", b"root\n").expect("append");
        fs.create("/shared/cfg").expect("create");
        fs.write("/shared/cfg", 0, b"original").expect("write");
    });
    parallel_for(4, |i| {
        let p = format!("/out/child{i}");
        with_fs(|fs| {
            fs.create(&p).expect("create");
            fs.write(&p, 0, format!("made by child {i}\n").as_bytes())
                .expect("write");
            fs.append("/shared/log", format!("child {i}\n").as_bytes())
                .expect("append");
            // Printed inside the scope: it reaches stdout when the scope ends.
            println!("child {i} wrote {p}");
        });
    })
    .expect("join");
    let (names, log) = with_fs(|fs| {
        let names = fs.readdir("/out").expect("readdir");
        (names, fs.read_all("/shared/log").expect("read"))
    });
    let mut names: alloc::vec::Vec<_> = names.into_iter().map(|(n, _)| n).collect();
    names.sort();
    println!("/out: {}", names.join(" "));
    println!(
        "/shared/log: {:?}",
        core::str::from_utf8(&log).unwrap_or("?")
    );
    let a = fork(|| {
        with_fs(|fs| fs.write("/shared/cfg", 0, b"AAAA")).expect("write");
        0
    })
    .expect("fork");
    let b = fork(|| {
        with_fs(|fs| fs.write("/shared/cfg", 0, b"BBBB")).expect("write");
        0
    })
    .expect("fork");
    a.join().expect("join a");
    match b.join() {
        Ok(_) => println!("no file conflict?"),
        Err(e) => println!("{e}"),
    }
    let cfg = with_fs(|fs| fs.read_all("/shared/cfg")).expect("read");
    println!("/shared/cfg: {}", core::str::from_utf8(&cfg).unwrap_or("?"));

    // c1 and c2 start from the same files; the parent then changes
    // /shared/cfg, and c3 starts from that and appends to it: no conflict
    // against what c3 started from. c1 rewrote it: a conflict against what
    // c1 started from.
    let c1 = fork(|| {
        with_fs(|fs| fs.write("/shared/cfg", 0, b"c1c1")).expect("write");
        0
    })
    .expect("fork");
    let c2 = fork(|| {
        with_fs(|fs| fs.create("/out/c2")).expect("create");
        0
    })
    .expect("fork");
    with_fs(|fs| fs.write("/shared/cfg", 0, b"PPPP")).expect("write");
    let c3 = fork(|| {
        with_fs(|fs| {
            let cfg = fs.read_all("/shared/cfg").expect("read");
            let seen = core::str::from_utf8(&cfg).unwrap_or("?");
            fs.create(&format!("/out/c3-saw-{seen}")).expect("create");
            fs.append("/shared/cfg", b"+c3").expect("append");
        });
        0
    })
    .expect("fork");
    c3.join().expect("join c3");
    c2.join().expect("join c2");
    match c1.join() {
        Ok(_) => println!("late: no file conflict?"),
        Err(e) => println!("late: {e}"),
    }
    let (names, cfg) = with_fs(|fs| {
        let names = fs.readdir("/out").expect("readdir");
        (names, fs.read_all("/shared/cfg").expect("read"))
    });
    let mut names: alloc::vec::Vec<_> = names.into_iter().map(|(n, _)| n).collect();
    names.sort();
    println!(
        "late: /out: {}; /shared/cfg: {}",
        names.join(" "),
        core::str::from_utf8(&cfg).unwrap_or("?")
    );
    0
}
