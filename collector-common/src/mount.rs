//! Mounts: a new mount of a source, or a mount moved.

use crate::{EventHeader, PATH_MAX, ProcessInfo};

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountOp {
    /// `mount(2)`: `source` is the device or path as given.
    Mount = 0,
    /// `move_mount(2)`: `source` is the mount being moved.
    Move = 1,
}

impl MountOp {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Mount),
            1 => Some(Self::Move),
            _ => None,
        }
    }
}

/// Bytes of the filesystem type carried by a mount record.
pub const FSTYPE_LEN: usize = 32;

/// Fixed part of a mount record, followed by `source_len` bytes of source
/// and `target_len` bytes of target path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MountEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// [`MountOp`].
    pub op: u8,
    pub _pad: [u8; 3],
    pub source_len: u16,
    pub target_len: u16,
    /// `MS_*` flags.
    pub flags: u64,
    pub fstype: [u8; FSTYPE_LEN],
}

pub const MOUNT_EVENT_SIZE: usize = core::mem::size_of::<MountEvent>();

#[repr(C)]
#[derive(Clone, Copy)]
pub struct MountRecord {
    pub event: MountEvent,
    pub paths: [u8; 2 * PATH_MAX],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<MountEvent>() == 128);
    assert!(offset_of!(MountRecord, paths) == MOUNT_EVENT_SIZE);
};

/// Value of the `MOUNT_INODES` map: what a mount of a tree rooted at (or
/// below) this directory answers to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountIdentity {
    /// The deny rule of a denied source: a tree rooted here or anywhere
    /// below may not be mounted. With `ino` 0 in the key: every tree of
    /// that filesystem (a denied block device).
    pub below: u32,
    /// The deny rule of a denied source below this directory: a tree rooted
    /// exactly here would show it.
    pub at: u32,
}

/// Capacity of a `MOUNT_INODES` map.
pub const MOUNT_INODES_MAX: u32 = 16_384;

/// Directories a moved tree's root is looked up through, upwards to its
/// filesystem's root; a tree deeper than that is refused in block mode
/// (fail closed).
pub const MOUNT_WALK_STEPS: usize = 64;

const _: () = assert!(core::mem::size_of::<MountIdentity>() == 8);
