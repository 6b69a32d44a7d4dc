//! File operations: one record layout for every file hook.

use crate::{EventHeader, PATH_MAX, ProcessInfo};

/// The operation a file record is about.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    Open = 0,
    Unlink = 1,
    Rmdir = 2,
    /// `path` is the source, `path2` the target.
    Rename = 3,
    Truncate = 4,
    /// `arg` holds the new mode bits.
    Chmod = 5,
    /// `arg` holds the new uid (low 32 bits) and gid (high 32 bits);
    /// `u32::MAX` where unchanged.
    Chown = 6,
    /// `arg` holds `prot` (low 32 bits) and the mmap flags (high 32 bits).
    Mmap = 7,
    /// `arg` holds the ioctl command.
    Ioctl = 8,
    /// A hard link: `path` is the existing file, `path2` the new name.
    Link = 9,
    /// `path` is the new symbolic link (its target is not judged: opening
    /// through it reaches the target, which is judged then).
    Symlink = 10,
    /// `arg` holds the requested mode bits.
    Mkdir = 11,
    /// `arg` holds the requested mode (file type and bits, low 32 bits)
    /// and the device number (high 32 bits).
    Mknod = 12,
    /// A descriptor received over a Unix socket (`SCM_RIGHTS`).
    Receive = 13,
}

impl FileOp {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Open),
            1 => Some(Self::Unlink),
            2 => Some(Self::Rmdir),
            3 => Some(Self::Rename),
            4 => Some(Self::Truncate),
            5 => Some(Self::Chmod),
            6 => Some(Self::Chown),
            7 => Some(Self::Mmap),
            8 => Some(Self::Ioctl),
            9 => Some(Self::Link),
            10 => Some(Self::Symlink),
            11 => Some(Self::Mkdir),
            12 => Some(Self::Mknod),
            13 => Some(Self::Receive),
            _ => None,
        }
    }
}

/// Fixed part of a file record. On the wire it is followed by `path_len`
/// bytes of path and then `path2_len` bytes of the second path (no NULs);
/// the record is no longer than that. The second path is a rename's target,
/// a hard link's new name, or, for a `PATH_RELATIVE` path, the absolute path of the directory it is
/// relative to (empty where the kernel could not tell).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// [`FileOp`].
    pub op: u8,
    /// `PATH_RELATIVE`, `PATH_TRUNCATED`.
    pub path_flags: u8,
    pub _pad: [u8; 2],
    /// Open flags (`O_*`, plus `__FMODE_EXEC` for an exec), for opens.
    pub open_flags: u32,
    /// `file->f_mode` (BPF-LSM opens); 0 elsewhere.
    pub fmode: u32,
    /// Directory fd a relative path is resolved against (audit tier).
    pub dfd: i32,
    /// Operation argument: see [`FileOp`].
    pub arg: u64,
    pub path_len: u16,
    pub path2_len: u16,
    /// The programs' scratch, meaningless in a record: with the path that
    /// follows it in a [`FileRecord`] it forms a path-prefix trie key (its
    /// length in bits, then the path), so a path is judged where it was
    /// written rather than copied into a key first.
    pub key_bits: u32,
}

/// Size of the fixed part of a [`FileEvent`] record.
pub const FILE_EVENT_SIZE: usize = core::mem::size_of::<FileEvent>();

/// Scratch layout the programs fill before copying the used part out: the
/// second path is written right after the first, so the paths area holds
/// two full paths.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileRecord {
    pub event: FileEvent,
    pub paths: [u8; 2 * PATH_MAX],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<FileEvent>() == 112);
    assert!(offset_of!(FileEvent, process) == 24);
    assert!(offset_of!(FileEvent, op) == 80);
    assert!(offset_of!(FileEvent, arg) == 96);
    assert!(offset_of!(FileEvent, path_len) == 104);
    // `key_bits` and the paths make one trie key.
    assert!(offset_of!(FileEvent, key_bits) + 4 == size_of::<FileEvent>());
    assert!(offset_of!(FileRecord, paths) == size_of::<FileEvent>());
    assert!(offset_of!(FileRecord, paths) == FILE_EVENT_SIZE);
};
