//! The boot protocol: everything the builder (on the host) and the guest
//! (init, the test programs, the demo harness) say to each other, written
//! and parsed in one place. docs/boot-protocol.md describes it in prose.
//!
//! - [`cmdline`]: splitting the kernel command line into parameters, the
//!   kernel's way, and the `det.*` keys init reads ([`key`]);
//! - [`Mode`]: what init runs, and its `det.run=`/`det.runx=HEX` encoding;
//! - [`status`]: init's `DET-INIT`/`DET-EXIT` status lines and the
//!   `# DET-SPEED` line of the output channel;
//! - [`record`]: the `TAG key=value ...` result lines of `det-bench`,
//!   `det-check` and the demos;
//! - [`is_plain_word`]: what may go unquoted on a kernel command line and
//!   in a `/bin/sh` command.
//!
//! `no_std`, with `alloc` behind the default `alloc` feature, so the same
//! code runs in init, in no_std guest programs and in the builder; it is
//! unit-tested on the host.

#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
pub mod cmdline;
#[cfg(feature = "alloc")]
mod mode;
pub mod record;
pub mod status;

#[cfg(feature = "alloc")]
pub use mode::Mode;

/// The `det.*` keys of the kernel command line (docs/boot-protocol.md).
pub mod key {
    /// `tests`, `demos`, `shell` or a command for `/bin/sh -c`.
    pub const RUN: &str = "det.run";
    /// The command as hex-encoded UTF-8; wins over [`RUN`].
    pub const RUNX: &str = "det.runx";
    /// Where the output of what init runs goes.
    pub const OUT: &str = "det.out";
    /// Where init's status lines go.
    pub const STATUS: &str = "det.status";
    /// Only these test programs, comma-separated.
    pub const TESTS: &str = "det.tests";
    /// CPUs the host gave the guest.
    pub const CPUS: &str = "det.cpus";
    /// Seconds before a test program is killed, times the speed factor.
    pub const TEST_TIMEOUT: &str = "det.test_timeout";
    /// `1`: shell mode runs the demo tour on the screen first.
    pub const TOUR: &str = "det.tour";
    /// The data partition's GPT name; init waits for it.
    pub const DATA: &str = "det.data";

    /// Every key init knows; any other `det.` key is an error.
    pub const ALL: &[&str] = &[
        RUN,
        RUNX,
        OUT,
        STATUS,
        TESTS,
        CPUS,
        TEST_TIMEOUT,
        TOUR,
        DATA,
    ];
}

/// The GPT name of a disk image's data partition, mounted at `/data`.
pub const DATA_LABEL: &str = "detlinux-data";

/// Whether `word` can be written as it is, both as a kernel parameter's
/// value and as one `/bin/sh` word: non-empty, and only ASCII letters,
/// digits and `-_./,:=+@%` (no space, quote, `$`, glob or separator).
pub fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./,:=+@%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words() {
        for w in ["tests", "/bin/true", "a=b,c:d", "x+y@z%"] {
            assert!(is_plain_word(w), "{w}");
        }
        for w in ["", "a b", "a\"b", "it's", "$x", "*", "a;b", "é"] {
            assert!(!is_plain_word(w), "{w}");
        }
    }
}
