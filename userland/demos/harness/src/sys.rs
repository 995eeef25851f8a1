//! The one system call std does not wrap: CPU affinity.

#![allow(unsafe_code)]

/// Restricts this process (and what it starts from now on) to CPUs
/// `0..cpus`: the N of a benchmark run.
pub fn pin(cpus: u32) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..cpus as usize {
        // SAFETY: CPU_SET only sets bit `c` of `set`; it checks `c`
        // against the set's size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of
    // the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(format!(
            "sched_setaffinity to {cpus} CPUs: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
