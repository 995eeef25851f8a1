//! The only unsafe code of the test programs: safe wrappers over the few
//! system calls std does not offer. Each `unsafe` block says why it is sound.

/// The kernel release, as uname(2) reports it (`6.12.0-detlinux`).
pub fn kernel_release() -> Result<String, String> {
    // SAFETY: utsname is plain old data (arrays of c_char); all-zero is a
    // valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the whole call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).map_err(|_| "uname: release is not UTF-8".to_string())
}

/// Restricts this process (and what it creates from now on) to the CPUs
/// in `cpus`.
pub fn set_affinity(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes one bit inside `set` (c < CPU_SETSIZE).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed, for pid 0
    // (this thread).
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(format!(
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
