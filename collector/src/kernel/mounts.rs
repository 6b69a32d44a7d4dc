//! Pseudo filesystems the agent needs: tracefs (tracepoint ids) and
//! securityfs (the active LSM list). systemd mounts both on a normal host;
//! minimal hosts and containers may not, so the agent mounts what is missing.

use std::{ffi::CString, io, path::Path};

pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const SECURITYFS: &str = "/sys/kernel/security";

/// Mounts `fstype` on `target` unless `probe` (a file below it) exists.
/// Returns whether it mounted anything.
pub fn ensure(fstype: &str, target: &str, probe: &str) -> io::Result<bool> {
    if Path::new(target).join(probe).exists() {
        return Ok(false);
    }
    let c = |s: &str| CString::new(s).expect("no NUL in a constant");
    let (source, fs, dir) = (c(fstype), c(fstype), c(target));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            dir.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(true)
    } else {
        Err(io::Error::last_os_error())
    }
}
