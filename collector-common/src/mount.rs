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
    assert!(size_of::<MountEvent>() == 120);
    assert!(offset_of!(MountRecord, paths) == MOUNT_EVENT_SIZE);
};
