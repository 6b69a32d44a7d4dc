//! Shared by the integration tests.

use std::path::PathBuf;

/// The workspace's root, from the package directory cargo gives the running
/// test (`CARGO_MANIFEST_DIR` in its environment), not the one compiled in:
/// a build cache shared between checkouts would otherwise point the test at
/// another checkout's files.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..")
}
