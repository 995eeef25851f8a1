//! The one system call std does not wrap: CPU affinity (rustix's).

/// Restricts this process (and what it starts from now on) to CPUs
/// `0..cpus`: the N of a benchmark run.
pub fn pin(cpus: u32) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    for c in 0..cpus as usize {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("sched_setaffinity to {cpus} CPUs: {e}"))
}
