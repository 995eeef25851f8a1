//! `fsjoin`: children create files and append to a shared log; the parent
//! sees all of it after the joins, appends in join order. Two children
//! rewriting one file is a conflict naming the path.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use determ::{fork, fs_mut, parallel_for, println};

determ::main!(run);

fn run() -> i32 {
    let fs = fs_mut();
    fs.mkdir("/out").expect("mkdir");
    fs.mkdir("/shared").expect("mkdir");
    fs.create("/shared/log").expect("create");
    fs.append("/shared/log", b"root\n").expect("append");
    fs.create("/shared/cfg").expect("create");
    fs.write("/shared/cfg", 0, b"original").expect("write");
    parallel_for(4, |i| {
        let fs = fs_mut();
        let p = format!("/out/child{i}");
        fs.create(&p).expect("create");
        fs.write(&p, 0, format!("made by child {i}\n").as_bytes())
            .expect("write");
        fs.append("/shared/log", format!("child {i}\n").as_bytes())
            .expect("append");
        println!("child {i} wrote {p}");
    })
    .expect("join");
    let fs = fs_mut();
    let names = fs.readdir("/out").expect("readdir");
    let mut names: alloc::vec::Vec<_> = names.into_iter().map(|(n, _)| n).collect();
    names.sort();
    println!("/out: {}", names.join(" "));
    let log = fs.read_all("/shared/log").expect("read");
    println!(
        "/shared/log: {:?}",
        core::str::from_utf8(&log).unwrap_or("?")
    );
    let a = fork(|| {
        fs_mut().write("/shared/cfg", 0, b"AAAA").expect("write");
        0
    })
    .expect("fork");
    let b = fork(|| {
        fs_mut().write("/shared/cfg", 0, b"BBBB").expect("write");
        0
    })
    .expect("fork");
    a.join().expect("join a");
    match b.join() {
        Ok(_) => println!("no file conflict?"),
        Err(e) => println!("{e}"),
    }
    let cfg = fs_mut().read_all("/shared/cfg").expect("read");
    println!("/shared/cfg: {}", core::str::from_utf8(&cfg).unwrap_or("?"));
    0
}
