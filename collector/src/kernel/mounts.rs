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
    mount(fstype, Path::new(target))?;
    Ok(true)
}

/// Mounts a fresh `fstype` (no device) on `target`.
pub fn mount(fstype: &str, target: &Path) -> io::Result<()> {
    let fs = CString::new(fstype).expect("no NUL in a file system type");
    let dir = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            dir.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
