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

    #[test]
    fn a_missing_btf_file_is_reported_with_its_path() {
        let err = resolve(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
