//! The few system calls std does not offer, through rustix's safe
//! wrappers.

/// The kernel release, as uname(2) reports it (`6.12.0-detlinux`).
pub fn kernel_release() -> Result<String, String> {
    let uts = rustix::system::uname();
    let release = uts.release().to_str();
    release
        .map(str::to_owned)
        .map_err(|_| "uname: release is not UTF-8".to_string())
}

/// Restricts this process (and what it creates from now on) to the CPUs
/// in `cpus`.
pub fn set_affinity(cpus: &[usize]) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("sched_setaffinity: {e}"))
}
