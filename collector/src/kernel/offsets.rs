//! Offsets of the kernel struct fields the programs read, taken from the
//! running kernel's BTF. Rust eBPF programs cannot carry CO-RE relocations,
//! so the agent supplies the offsets as read-only globals before load.

use std::path::Path;

use btf_rs::{Btf, Type};
use collector_common::offsets;

/// Where the running kernel describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "cannot read the kernel's BTF at {path} ({source}); the kernel needs CONFIG_DEBUG_INFO_BTF=y"
    )]
    Btf {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(&'static str),
    #[error("the kernel's BTF has no field {field} in struct {strukt}")]
    NoField {
        strukt: &'static str,
        field: &'static str,
    },
}

/// Byte offsets, by global name.
pub fn resolve(btf_path: &Path) -> Result<Vec<(&'static str, u64)>, OffsetError> {
    let btf = Btf::from_file(btf_path).map_err(|source| OffsetError::Btf {
        path: btf_path.display().to_string(),
        source,
    })?;
    offsets::FIELDS
        .iter()
        .map(|&(global, strukt, field)| {
            let bits = field_bit_offset(&btf, strukt, field)?;
            Ok((global, u64::from(bits / 8)))
        })
        .collect()
}

/// Where a module's BTF is, for the module `name`.
fn module_btf(name: &str) -> std::path::PathBuf {
    Path::new("/sys/kernel/btf").join(name)
}

/// Where btrfs keeps an inode's subvolume, for the programs'
/// `globals::BTRFS_*`: `(offset from a btrfs inode's `struct inode` to its
/// `btrfs_root *` (wrapping), offset of `anon_dev` in `btrfs_root`)`.
/// From the kernel's BTF when btrfs is built in, else from the module's
/// (`/sys/kernel/btf/btrfs`, there while it is loaded). `None` when neither
/// describes it: then no btrfs filesystem can be mounted yet, or the
/// module was built without BTF.
pub fn resolve_btrfs(vmlinux: &Path) -> Option<(u64, u64)> {
    let base = Btf::from_file(vmlinux).ok()?;
    let in_btf = |btf: &Btf| -> Option<(u64, u64)> {
        let root = field_bit_offset(btf, "btrfs_inode", "root").ok()?;
        let vfs_inode = field_bit_offset(btf, "btrfs_inode", "vfs_inode").ok()?;
        let anon_dev = field_bit_offset(btf, "btrfs_root", "anon_dev").ok()?;
        let to_root = u64::from(root / 8).wrapping_sub(u64::from(vfs_inode / 8));
        Some((to_root, u64::from(anon_dev / 8)))
    };
    in_btf(&base).or_else(|| {
        let module = Btf::from_split_file(module_btf("btrfs"), &base).ok()?;
        in_btf(&module)
    })
}

fn field_bit_offset(
    btf: &Btf,
    strukt: &'static str,
    field: &'static str,
) -> Result<u32, OffsetError> {
    let candidates = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| OffsetError::NoStruct(strukt))?;
    candidates
        .iter()
        .find_map(|t| match t {
            Type::Struct(s) => find_member(btf, s, field),
            _ => None,
        })
        .ok_or(OffsetError::NoField { strukt, field })
}

/// Searches `s` for `field`, descending into anonymous structs and unions.
fn find_member(btf: &Btf, s: &btf_rs::Struct, field: &str) -> Option<u32> {
    for member in &s.members {
        let name = btf.resolve_name(member).unwrap_or_default();
        if name == field {
            return Some(member.bit_offset());
        }
        if name.is_empty() {
            let inner = match btf.resolve_chained_type(member).ok()? {
                Type::Struct(inner) | Type::Union(inner) => inner,
                _ => continue,
            };
            if let Some(off) = find_member(btf, &inner, field) {
                return Some(member.bit_offset() + off);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel; every Linux with BTF has these.
    #[test]
    fn finds_every_field_in_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF} on this machine");
            return;
        }
        let offsets = resolve(Path::new(VMLINUX_BTF)).unwrap();
        assert_eq!(offsets.len(), offsets::FIELDS.len());
        let get = |n| offsets.iter().find(|(g, _)| *g == n).unwrap().1;
        // f_path, f_flags and f_mode are distinct fields inside struct file.
        let (path, flags, mode) = (
            get("FILE_F_PATH_OFFSET"),
            get("FILE_F_FLAGS_OFFSET"),
            get("FILE_F_MODE_OFFSET"),
        );
        assert!(path != flags && flags != mode && path != mode);
        assert!(path < 512 && flags < 512 && mode < 512);
        assert!(get("TASK_REAL_PARENT_OFFSET") > get("TASK_TGID_OFFSET"));
        // Fields inside anonymous structs are found too (mm_struct's
        // argument area sits in one on current kernels).
        assert!(get("MM_ARG_END_OFFSET") > get("MM_ARG_START_OFFSET"));
    }

    /// btrfs's types are in the kernel's BTF where it is built in, in its
    /// module's while it is loaded.
    #[test]
    fn finds_btrfs_subvolumes_where_the_kernel_describes_them() {
        let described = Btf::from_file(VMLINUX_BTF)
            .is_ok_and(|btf| btf.resolve_types_by_name("btrfs_inode").is_ok())
            || module_btf("btrfs").exists();
        let found = resolve_btrfs(Path::new(VMLINUX_BTF));
        if !described {
            assert_eq!(found, None);
            eprintln!("skipped: this kernel does not describe btrfs");
            return;
        }
        let (to_root, anon_dev) = found.expect("btrfs is described but not found");
        // `root` comes before the embedded `struct inode`: the offset wraps.
        assert!(to_root > u64::MAX - 4096, "{to_root:#x}");
        assert!(anon_dev < 4096, "{anon_dev}");
    }

    #[test]
    fn a_missing_btf_file_is_reported_with_its_path() {
        let err = resolve(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
