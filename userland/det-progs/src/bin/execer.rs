//! `execer`: runs `/bin/hello` from its file system (put there with
//! `detrun --add`) in a child and reports its status; a missing program is
//! a clean error.

#![no_std]
#![no_main]

use determ::{exec, println};

determ::main!(run);

fn run() -> i32 {
    println!("execer: starting /bin/hello");
    let c = exec("/bin/hello", &["hello", "from-exec"]).expect("exec");
    let status = c.join().expect("join");
    println!("execer: hello exited with {status}");
    match exec("/bin/missing", &["missing"]) {
        Ok(_) => println!("execer: missing program started?"),
        Err(e) => println!("execer: /bin/missing: {e}"),
    }
    0
}
