//! `fsscope`: the file system's scope, `determ::with_fs`. What the program
//! prints inside a scope appears when the scope ends, after what the scope
//! did to the files, in the root and in a child (whose output comes at its
//! join). With an argument it breaks the scope's rule or panics inside
//! one: `nested` (a `with_fs` inside another), `fork` (a fork inside one),
//! `panic`; the first two end with a report naming the rule, and what the
//! scope printed before a panic is still shown.

#![no_std]
#![no_main]

use determ::{eprintln, fork, println, with_fs};

determ::main!(run);

fn run() -> i32 {
    match determ::args().nth(1) {
        Some("nested") => with_fs(|_| with_fs(|_| println!("nested scope ran?"))),
        Some("fork") => with_fs(|_| {
            let _ = fork(|| 0);
            println!("fork inside a scope ran?");
        }),
        Some("panic") => with_fs(|_| {
            println!("printed before the panic");
            panic!("panic inside with_fs");
        }),
        _ => {}
    }
    let size = with_fs(|fs| {
        fs.create("/a").expect("create");
        println!("inside the scope");
        eprintln!("inside the scope, on stderr");
        fs.append("/a", b"12345").expect("append");
        fs.stat("/a").expect("stat").size
    });
    println!("after the scope: /a has {size} bytes");
    fork(|| {
        with_fs(|fs| {
            fs.append("/a", b"678").expect("append");
            println!("child: inside the scope");
        });
        println!("child: after the scope");
        0
    })
    .expect("fork")
    .join()
    .expect("join");
    let size = with_fs(|fs| fs.stat("/a").expect("stat").size);
    println!("joined: /a has {size} bytes");
    0
}
