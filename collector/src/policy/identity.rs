//! File rules by identity: every rule path that exists when the policy is
//! compiled, as the kernel knows it (device, inode and, where the
//! filesystem gives one, the inode's generation), for the
//! `FILE_INODES` map. The programs look up a file's dentry and those above
//! it, so a bind mount, a chroot, another mount namespace's view or a hard
//! link of a denied file answers to the same rule as its path.
//!
//! Files below a denied directory with more than one link are entered too:
//! a link made before the agent started is another name in another
//! directory, and only the file's own identity can tell.
//!
//! Two more kinds of entries let the programs settle most files by
//! identity alone, without building their path (`IdentityRule`):
//! - a mark ([`IDENTITY_CHECK_PATH`]) on every directory below which a
//!   path rule may match a file no identity speaks for: the directory of
//!   each rule path (its file may be replaced by another), and the nearest
//!   existing ancestor of a rule path that does not exist yet;
//! - the root of every filesystem mounted in the agent's tree
//!   ([`IDENTITY_KNOWN_ROOT`]), with the rules of the path it is mounted
//!   on: a walk up a file's dentries that ends there has met every
//!   identity that can speak for it.
//!
//! That holds only where inode numbers do: on the filesystems
//! [`stable_inodes`] lists. A policy with a rule or a mark elsewhere (say
//! in `/proc`, whose inode numbers change as entries come and go) has
//! every file judged by its path as well.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::OsString,
    fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt},
    path::{Path, PathBuf},
};

use collector_common::{
    BTRFS_MAGIC, IDENTITY_CHECK_PATH, IDENTITY_KNOWN_ROOT, IdentityRule, InodeKey,
    keyed_by_generation, mount::MountIdentity,
};
use tracing::warn;

use super::paths::PathRules;

/// Most entries looked at below denied directories for hard links, per
/// policy: a rule on a large tree must not make every reload walk it all.
pub const LINK_SCAN_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct Identities {
    by_inode: HashMap<InodeKey, IdentityRule>,
    /// Hard links below denied directories entered.
    pub links: usize,
    /// Whether the scan for hard links stopped at [`LINK_SCAN_LIMIT`].
    pub scan_cut: bool,
    /// Whether identities settle a file that meets no mark (every rule
    /// path and every mark is on a filesystem with stable inode numbers).
    pub settle: bool,
    /// For rule paths that do not exist: the nearest existing directory
    /// above each, and the names in it on the way to one. When one of
    /// those names appears the policy is compiled again (see
    /// `agent::reload::RulePathWatch`), so a rule path is entered by
    /// identity as soon as it exists.
    pub awaited: BTreeMap<PathBuf, BTreeSet<OsString>>,
    /// `statfs` magic numbers by device, while resolving.
    magics: HashMap<u64, Option<u64>>,
    /// Directories marked so far, while resolving.
    marked: std::collections::HashSet<PathBuf>,
}

impl Identities {
    /// Whether `other` puts the same entries into the map.
    pub fn same_entries(&self, other: &Self) -> bool {
        self.by_inode == other.by_inode
    }

    /// `deny` and `allow` are `(rule id, normalised absolute path)`; paths
    /// that do not exist (yet) are left to the path rules. `paths` are the
    /// same rules as path prefixes: what a mount point inherits.
    pub fn resolve(deny: &[(u32, &str)], allow: &[(u32, &str)], paths: &PathRules) -> Self {
        Self::resolve_in(deny, allow, paths, &mount_points())
    }

    fn resolve_in(
        deny: &[(u32, &str)],
        allow: &[(u32, &str)],
        paths: &PathRules,
        mounts: &[MountPoint],
    ) -> Self {
        let mut ids = Self {
            settle: true,
            ..Self::default()
        };
        for (denies, rules) in [(true, deny), (false, allow)] {
            for (id, path) in rules {
                if on_remote(Path::new(path), mounts) {
                    // Judged by its path alone.
                    ids.settle = false;
                    continue;
                }
                let existing = fs::metadata(path).ok();
                if let Some(meta) = &existing {
                    let magic = ids.magic(Path::new(path), meta);
                    ids.settle &= stable_inodes(magic);
                    if denies {
                        ids.deny_subvolume(meta, magic, *id);
                    }
                    let slot = ids.slot(identity_key(Path::new(path), meta, Follow::Links, magic));
                    let rule = if denies {
                        &mut slot.deny_rule
                    } else {
                        &mut slot.allow_rule
                    };
                    if *rule == 0 {
                        *rule = *id;
                    }
                }
                let above = ids.mark_above(Path::new(path));
                if let (None, Some(dir)) = (existing, above) {
                    let next = Path::new(path).strip_prefix(&dir).ok().and_then(|rest| {
                        rest.components().next().map(|c| c.as_os_str().to_owned())
                    });
                    if let Some(next) = next {
                        ids.awaited.entry(dir).or_default().insert(next);
                    }
                }
            }
        }
        let mut budget = LINK_SCAN_LIMIT;
        for (id, path) in deny {
            if budget == 0 {
                break;
            }
            if on_remote(Path::new(path), mounts) {
                continue;
            }
            ids.enter_links_below(Path::new(path), *id, &mut budget);
        }
        ids.enter_roots(mounts, paths);
        if budget == 0 {
            ids.scan_cut = true;
            warn!(
                "files.deny: stopped looking for hard links below denied directories after \
                 {LINK_SCAN_LIMIT} entries; a link made before now to a file further down is \
                 judged by its own path only"
            );
        }
        // Only for resolving: a compiled policy does not keep them.
        ids.magics = HashMap::new();
        ids.marked = Default::default();
        ids
    }

    /// Marks the nearest existing directory above `path`, and returns it:
    /// a file may yet take that path, or replace the one there.
    fn mark_above(&mut self, path: &Path) -> Option<PathBuf> {
        let mut dir = path.parent();
        while let Some(d) = dir {
            // Rule paths in one directory mark it once.
            if self.marked.contains(d) {
                return Some(d.to_path_buf());
            }
            if let Ok(meta) = fs::metadata(d) {
                self.marked.insert(d.to_path_buf());
                let magic = self.magic(d, &meta);
                self.settle &= stable_inodes(magic);
                self.slot(identity_key(d, &meta, Follow::Links, magic))
                    .flags |= IDENTITY_CHECK_PATH;
                return Some(d.to_path_buf());
            }
            dir = d.parent();
        }
        None
    }

    /// Enters the root of each filesystem mounted whole with the rules of
    /// its mount point. A root mounted at several places is denied if it
    /// is denied at any of them (each is a name of the same files), and
    /// allowed only by an allowance all of them agree on; one whose
    /// places differ only in what they allow is not known. A mount of a
    /// directory of a filesystem (a bind mount) at a place where rules
    /// apply is marked: what lies below it is judged by its path there
    /// too.
    fn enter_roots(&mut self, mounts: &[MountPoint], paths: &PathRules) {
        // Per root: (deny, the allowance its places agree on).
        let mut roots: HashMap<InodeKey, (u32, Option<u32>)> = HashMap::new();
        for mount in mounts.iter().filter(|m| !m.remote) {
            let Ok(meta) = fs::metadata(&mount.point) else {
                continue;
            };
            let magic = self.magic(&mount.point, &meta);
            let key = identity_key(&mount.point, &meta, Follow::Links, magic);
            let point = mount.point.to_string_lossy();
            let (deny, allow) = paths
                .lookup(&point)
                .map_or((0, 0), |r| (r.deny_rule, r.allow_rule));
            if mount.whole {
                roots
                    .entry(key)
                    .and_modify(|seen| {
                        if seen.0 == 0 {
                            seen.0 = deny;
                        }
                        if seen.1 != Some(allow) {
                            seen.1 = None;
                        }
                    })
                    .or_insert((deny, Some(allow)));
            } else if (deny, allow) != (0, 0) {
                self.slot(key).flags |= IDENTITY_CHECK_PATH;
            }
        }
        for (key, (deny, allow)) in roots {
            if deny == 0 && allow.is_none() {
                continue;
            }
            let slot = self.slot(key);
            slot.flags |= IDENTITY_KNOWN_ROOT;
            if slot.deny_rule == 0 {
                slot.deny_rule = deny;
            }
            if slot.allow_rule == 0 {
                slot.allow_rule = allow.unwrap_or(0);
            }
        }
    }

    /// Enters every file below `dir` with more than one link, as denied by
    /// `rule`; each entry looked at costs one of `budget`.
    fn enter_links_below(&mut self, dir: &Path, rule: u32, budget: &mut usize) {
        let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if *budget == 0 {
                    return;
                }
                *budget -= 1;
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    // A subvolume nested below the denied directory.
                    let magic = self.magic(&entry.path(), &meta);
                    self.deny_subvolume(&meta, magic, rule);
                    pending.push(entry.path());
                } else if meta.nlink() > 1 && !meta.file_type().is_symlink() {
                    let path = entry.path();
                    let magic = self.magic(&path, &meta);
                    let slot = self.slot(identity_key(&path, &meta, Follow::NoLinks, magic));
                    if slot.deny_rule == 0 {
                        slot.deny_rule = rule;
                        self.links += 1;
                    }
                }
            }
        }
    }

    /// On btrfs, denies a snapshot or a send of the subvolume holding a
    /// file `rule` denies (`InodeKey::subvolume`): each copies the file
    /// whole under names no rule speaks of, without opening it.
    fn deny_subvolume(&mut self, meta: &fs::Metadata, magic: Option<u64>, rule: u32) {
        if magic == Some(BTRFS_MAGIC) {
            let slot = self.slot(InodeKey::subvolume(key_of(meta).dev));
            if slot.deny_rule == 0 {
                slot.deny_rule = rule;
            }
        }
    }

    /// The magic number of the filesystem holding `path` (whose metadata
    /// is `meta`), asked once per device: a policy of many rule paths on
    /// a few filesystems makes a few `statfs` calls, not one per path.
    fn magic(&mut self, path: &Path, meta: &fs::Metadata) -> Option<u64> {
        *self
            .magics
            .entry(meta.dev())
            .or_insert_with(|| fs_magic(path))
    }

    fn slot(&mut self, key: InodeKey) -> &mut IdentityRule {
        self.by_inode.entry(key).or_default()
    }

    /// The map's entries.
    pub fn entries(&self) -> impl Iterator<Item = (InodeKey, IdentityRule)> + '_ {
        self.by_inode.iter().map(|(k, v)| (*k, *v))
    }

    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    /// The rule `path` answers to by its own identity (not its ancestors'),
    /// as the kernel's lookup finds it.
    pub fn lookup(&self, path: &Path) -> Option<&IdentityRule> {
        fs::symlink_metadata(path).ok().and_then(|meta| {
            self.by_inode
                .get(&identity_key(path, &meta, Follow::NoLinks, fs_magic(path)))
        })
    }
}

/// A place where a filesystem is mounted, from `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
struct MountPoint {
    point: PathBuf,
    /// The mount shows the filesystem from its root (not a bind mount of
    /// one of its directories).
    whole: bool,
    /// A network or FUSE filesystem: `stat` of a file there may never
    /// return (its server gone), and a reload must.
    remote: bool,
}

/// Whether `path` lies on a network or FUSE filesystem: the last of the
/// longest mount points above it is remote. Rule paths there are judged
/// by their path alone, never looked at.
fn on_remote(path: &Path, mounts: &[MountPoint]) -> bool {
    mounts.iter().any(|m| m.remote)
        && mounts
            .iter()
            .filter(|m| path.starts_with(&m.point))
            .max_by_key(|m| m.point.as_os_str().len())
            .is_some_and(|m| m.remote)
}

/// Denied mount sources by identity (`mount.deny`), for the programs'
/// `move_mount` check: each source that exists (through symbolic links)
/// is denied at and below itself; the root of each filesystem mounted
/// below it too; each directory above it on its filesystem is denied as
/// the root of a tree (a bind of `/` would show it); a block device
/// denies every tree of the filesystem on it.
pub fn mount_sources(deny: &[(u32, &str)]) -> Vec<(InodeKey, MountIdentity)> {
    mount_sources_in(deny, &mount_points())
}

fn mount_sources_in(deny: &[(u32, &str)], mounts: &[MountPoint]) -> Vec<(InodeKey, MountIdentity)> {
    let mut by_inode: HashMap<InodeKey, MountIdentity> = HashMap::new();
    let deny_below = |map: &mut HashMap<InodeKey, MountIdentity>, key, rule| {
        let slot = map.entry(key).or_default();
        if slot.below == 0 {
            slot.below = rule;
        }
    };
    for &(id, path) in deny {
        let source = Path::new(path);
        if on_remote(source, mounts) {
            continue;
        }
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            let key = InodeKey {
                ino: 0,
                dev: (libc::major(rdev) << 20) | libc::minor(rdev),
                generation: 0,
            };
            deny_below(&mut by_inode, key, id);
            continue;
        }
        deny_below(&mut by_inode, key_of(&meta), id);
        for mount in mounts
            .iter()
            .filter(|m| !m.remote && m.point.starts_with(source))
        {
            if let Ok(root) = fs::metadata(&mount.point) {
                deny_below(&mut by_inode, key_of(&root), id);
            }
        }
        let mut dir = source.parent();
        while let Some(d) = dir {
            match fs::metadata(d) {
                Ok(above) if above.dev() == meta.dev() => {
                    let slot = by_inode.entry(key_of(&above)).or_default();
                    if slot.at == 0 {
                        slot.at = id;
                    }
                }
                _ => break,
            }
            dir = d.parent();
        }
    }
    by_inode.into_iter().collect()
}

/// The agent's mount table as the identities see it: `(mount point,
/// mounted whole)`, network and FUSE filesystems left out.
pub fn mount_table() -> std::collections::BTreeSet<(PathBuf, bool)> {
    mount_points()
        .into_iter()
        .filter(|m| !m.remote)
        .map(|m| (m.point, m.whole))
        .collect()
}

/// Whether a filesystem of type `fstype` is mounted in the agent's tree.
pub fn mounted(fstype: &str) -> bool {
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| {
        text.lines().any(|line| {
            line.split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                == Some(fstype)
        })
    })
}

/// The agent's mounts. Read by hand: a few fields of a stable format, as
/// elsewhere in the agent (`events::container`).
fn mount_points() -> Vec<MountPoint> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_mountinfo(&text)
}

/// Mounts of network and FUSE filesystems are marked `remote`: nothing
/// there is looked at. Files there are judged by their path as well (their
/// root is not known).
fn parse_mountinfo(text: &str) -> Vec<MountPoint> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let root = fields.nth(3)?;
            let point = fields.next()?;
            let fstype = fields.skip_while(|f| *f != "-").nth(1)?;
            let remote = matches!(
                fstype,
                "nfs" | "nfs4" | "cifs" | "smb3" | "ceph" | "9p" | "afs" | "glusterfs" | "lustre"
            ) || fstype == "fuse"
                || fstype.starts_with("fuse.");
            Some(MountPoint {
                point: PathBuf::from(unescape(point)),
                whole: root == "/",
                remote,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|o| {
            std::str::from_utf8(o)
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the filesystem of `magic` keeps a file's inode number for
/// as long as the file exists: ext2/3/4, XFS, tmpfs, btrfs (numbers per
/// subvolume, each with its device number, which the programs read) and
/// ramfs. Others may not: procfs and sysfs number entries as they are
/// made, FAT by place, network filesystems as the server says.
fn stable_inodes(magic: Option<u64>) -> bool {
    const RAMFS: u64 = 0x8584_58f6;
    magic.is_some_and(|magic| keyed_by_generation(magic) || magic == RAMFS)
}

/// The `statfs` magic number of the filesystem holding `path`.
fn fs_magic(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statfs to fill.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type as u64)
}

/// A file's identity as the kernel writes it: `super_block.s_dev` is
/// `MKDEV(major, minor)` (major << 20 | minor), not the encoding `stat`
/// returns. No generation: the key of the maps other than `FILE_INODES`.
pub(crate) fn key_of(meta: &fs::Metadata) -> InodeKey {
    let dev = meta.dev();
    InodeKey {
        ino: meta.ino(),
        dev: (libc::major(dev) << 20) | libc::minor(dev),
        generation: 0,
    }
}

/// A file's key in `FILE_INODES`: [`key_of`] with, on a filesystem whose
/// identities carry it ([`keyed_by_generation`]), the inode's generation as
/// the programs read it. Where the generation cannot be read there, the
/// key cannot match and the file is judged by its path alone: said once.
/// `magic` is the filesystem's (see [`fs_magic`]).
fn identity_key(path: &Path, meta: &fs::Metadata, follow: Follow, magic: Option<u64>) -> InodeKey {
    let mut key = key_of(meta);
    if magic.is_some_and(keyed_by_generation) {
        match generation_of(path, follow, key.ino) {
            Some(generation) => key.generation = generation,
            None => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    warn!(
                        "cannot read the inode generation of {} from its file handle: a rule \
                         there is judged by its path alone",
                        path.display()
                    )
                });
            }
        }
    }
    key
}

/// Whether a path's last component is followed when it is a symbolic
/// link (as `fs::metadata` does) or not (as `fs::symlink_metadata`).
#[derive(Clone, Copy)]
enum Follow {
    Links,
    NoLinks,
}

/// The `i_generation` of the inode at `path` (whose number is `ino`), as
/// the programs read it; `None` where it cannot be learnt. There is no system
/// call for it: `FS_IOC_GETVERSION` needs the file open (an open of a
/// denied file, or of a device or FIFO, is not for the agent to make) and
/// tmpfs does not answer it. The file handle `name_to_handle_at(2)` gives
/// holds it on the filesystems whose layout [`generation_in_handle`]
/// knows; the layout is confirmed by the inode number it must also hold.
fn generation_of(path: &Path, follow: Follow, ino: u64) -> Option<u32> {
    /// `MAX_HANDLE_SZ`.
    const HANDLE_BYTES: usize = 128;
    #[repr(C)]
    struct FileHandle {
        handle_bytes: u32,
        handle_type: i32,
        f_handle: [u32; HANDLE_BYTES / 4],
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut handle = FileHandle {
        handle_bytes: HANDLE_BYTES as u32,
        handle_type: 0,
        f_handle: [0; HANDLE_BYTES / 4],
    };
    let mut mount_id: libc::c_int = 0;
    let flags = match follow {
        Follow::Links => libc::AT_SYMLINK_FOLLOW,
        Follow::NoLinks => 0,
    };
    // SAFETY: a valid C string, a handle buffer of the size it declares,
    // and an int for the mount id.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c.as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            flags,
        )
    };
    if rc != 0 {
        return None;
    }
    let words = (handle.handle_bytes as usize / 4).min(handle.f_handle.len());
    generation_in_handle(handle.handle_type, &handle.f_handle[..words], ino)
}

/// The generation in a file handle of one of the layouts the kernel's
/// filesystems write, if its inode number is `ino`.
fn generation_in_handle(handle_type: i32, words: &[u32], ino: u64) -> Option<u32> {
    /// `FILEID_INO32_GEN`.
    const INO32_GEN: i32 = 1;
    /// XFS's `FILEID_INO32_GEN | XFS_FILEID_TYPE_64FLAG`.
    const XFS_INO64_GEN: i32 = 0x81;
    /// btrfs's `FILEID_BTRFS_WITHOUT_PARENT`, `_WITH_PARENT` and
    /// `_WITH_PARENT_ROOT`: `struct btrfs_fid`, packed.
    const BTRFS: [i32; 3] = [0x4d, 0x4e, 0x4f];
    let wide = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    match (handle_type, words) {
        // ext2/3/4, XFS with 32-bit inode numbers, most others: the
        // number, then the generation.
        (INO32_GEN, &[number, generation]) if u64::from(number) == ino => Some(generation),
        // tmpfs: the generation, then the number in two halves.
        (INO32_GEN, &[generation, lo, hi]) if wide(lo, hi) == ino => Some(generation),
        (XFS_INO64_GEN, &[lo, hi, generation]) if wide(lo, hi) == ino => Some(generation),
        // btrfs: the number, the subvolume's, then the generation (and,
        // with a parent, the parent's).
        (kind, &[lo, hi, _, _, generation, ..]) if BTRFS.contains(&kind) && wide(lo, hi) == ino => {
            Some(generation)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_mount_source_is_denied_below_itself_and_as_the_root_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("srv/secret");
        let sub = source.join("data");
        let mounted = source.join("mnt");
        let beside = dir.path().join("srv/public");
        for d in [&sub, &mounted, &beside] {
            fs::create_dir_all(d).unwrap();
        }
        let key = |p: &Path| key_of(&fs::metadata(p).unwrap());
        let path = source.to_string_lossy().into_owned();
        // A filesystem mounted below the source (here: a directory standing
        // in for its root).
        let mounts = [MountPoint {
            point: mounted.clone(),
            whole: true,
            remote: false,
        }];
        let entries: HashMap<InodeKey, MountIdentity> = mount_sources_in(&[(7, &path)], &mounts)
            .into_iter()
            .collect();
        assert_eq!(entries[&key(&source)].below, 7);
        assert_eq!(entries[&key(&mounted)].below, 7);
        // Above it, on its filesystem: denied as a tree's root only.
        let parent = entries[&key(source.parent().unwrap())];
        assert_eq!((parent.below, parent.at), (0, 7));
        // Below and beside it: no entry (the walk up finds the source).
        assert!(!entries.contains_key(&key(&sub)));
        assert!(!entries.contains_key(&key(&beside)));
        // A source that does not exist has no identity.
        assert!(mount_sources_in(&[(8, "/no/such/source")], &[]).is_empty());
    }

    #[test]
    fn rule_paths_and_extra_links_below_denied_directories_get_identities() {
        let dir = tempfile::tempdir().unwrap();
        let denied = dir.path().join("secret");
        let allowed = dir.path().join("public");
        fs::create_dir_all(denied.join("sub")).unwrap();
        fs::create_dir_all(&allowed).unwrap();
        fs::write(denied.join("sub/key"), "k").unwrap();
        fs::write(denied.join("lonely"), "l").unwrap();
        // A link made elsewhere before the policy: another name, same file.
        fs::hard_link(denied.join("sub/key"), allowed.join("k")).unwrap();
        let (d, a) = (denied.to_str().unwrap(), allowed.to_str().unwrap());
        let missing = dir.path().join("not-yet");
        let deny = [(1, d), (3, missing.to_str().unwrap())];
        let paths = PathRules::build(&deny, &[(2, a)]);
        let ids = Identities::resolve_in(&deny, &[(2, a)], &paths, &[]);
        assert_eq!(ids.lookup(&denied).map(|r| r.deny_rule), Some(1));
        assert_eq!(ids.lookup(&allowed).map(|r| r.allow_rule), Some(2));
        // The extra link answers to the denied directory's rule.
        assert_eq!(ids.lookup(&allowed.join("k")).map(|r| r.deny_rule), Some(1));
        assert_eq!(ids.links, 1);
        // A file with one name is found by its directory, not entered.
        assert!(ids.lookup(&denied.join("lonely")).is_none());
        // The directory holding the rule paths (and the nearest existing
        // one above the missing path, the same) is marked, and only it.
        let marked = ids.lookup(dir.path()).unwrap();
        assert_eq!(marked.flags, IDENTITY_CHECK_PATH);
        assert_eq!((marked.deny_rule, marked.allow_rule), (0, 0));
        assert_eq!(ids.lookup(&denied).unwrap().flags, 0);
        assert_eq!(ids.len(), 4);
        assert!(!ids.scan_cut);
    }

    #[test]
    fn a_missing_rule_path_marks_its_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a")).unwrap();
        let missing = dir.path().join("a/b/c/key");
        let deny = [(1, missing.to_str().unwrap())];
        let paths = PathRules::build(&deny, &[]);
        let ids = Identities::resolve_in(&deny, &[], &paths, &[]);
        assert_eq!(ids.len(), 1);
        assert_eq!(
            ids.lookup(&dir.path().join("a")).unwrap().flags,
            IDENTITY_CHECK_PATH
        );
        // The name awaited there: the next step towards the rule path.
        let awaited = &ids.awaited[&dir.path().join("a")];
        assert_eq!(awaited.iter().collect::<Vec<_>>(), [&OsString::from("b")]);
        assert_eq!(ids.awaited.len(), 1);
    }

    #[test]
    fn a_mounted_root_carries_the_rules_of_its_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        let (usr, local, plain) = (
            dir.path().join("usr"),
            dir.path().join("usr/local"),
            dir.path().join("plain"),
        );
        fs::create_dir_all(&local).unwrap();
        fs::create_dir_all(&plain).unwrap();
        // The same directory under a second name, inside the denied one.
        std::os::unix::fs::symlink(&plain, usr.join("alias")).unwrap();
        let deny = [(1, usr.to_str().unwrap())];
        let paths = PathRules::build(&deny, &[]);
        let mount = |point: PathBuf, whole| MountPoint {
            point,
            whole,
            remote: false,
        };
        // `local` stands for a filesystem mounted below the denied
        // directory, `plain` for one mounted where no rule applies.
        let ids = Identities::resolve_in(
            &deny,
            &[],
            &paths,
            &[mount(local.clone(), true), mount(plain.clone(), true)],
        );
        let root = ids.lookup(&local).unwrap();
        assert_eq!((root.flags, root.deny_rule), (IDENTITY_KNOWN_ROOT, 1));
        let root = ids.lookup(&plain).unwrap();
        assert_eq!((root.flags, root.deny_rule), (IDENTITY_KNOWN_ROOT, 0));
        // One root mounted at a plain place and at a denied one: every
        // mount is a name of the same files, so the deny holds for all.
        let ids = Identities::resolve_in(
            &deny,
            &[],
            &paths,
            &[mount(plain.clone(), true), mount(usr.join("alias"), true)],
        );
        let root = ids.lookup(&plain).unwrap();
        assert_eq!((root.flags, root.deny_rule), (IDENTITY_KNOWN_ROOT, 1));
        // Places that differ only in what they allow: which allowance
        // holds is not known, so it is no known root.
        std::os::unix::fs::symlink(&plain, local.join("alias")).unwrap();
        let allow = [(2, local.to_str().unwrap())];
        let paths = PathRules::build(&[], &allow);
        let ids = Identities::resolve_in(
            &[],
            &allow,
            &paths,
            &[mount(plain.clone(), true), mount(local.join("alias"), true)],
        );
        assert!(ids.lookup(&plain).is_none());
        let paths = PathRules::build(&deny, &[]);
        // A bind mount of a directory, where a rule applies, is marked.
        let ids = Identities::resolve_in(&deny, &[], &paths, &[mount(usr.join("alias"), false)]);
        assert_eq!(ids.lookup(&plain).unwrap().flags, IDENTITY_CHECK_PATH);
        // ... and nowhere else.
        let ids = Identities::resolve_in(&deny, &[], &paths, &[mount(plain.clone(), false)]);
        assert!(ids.lookup(&plain).is_none());
    }

    #[test]
    fn mountinfo_lines_give_mount_points_and_whether_mounted_whole() {
        let text = concat!(
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
            "40 22 8:1 /srv/data /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n",
            "41 22 0:50 / /mnt/nfs rw shared:9 - nfs4 server:/export rw\n",
            "42 22 0:51 / /mnt/ssh rw - fuse.sshfs me@host:/ rw\n",
        );
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].point, PathBuf::from("/"));
        assert!(mounts[0].whole);
        assert_eq!(mounts[1].point, PathBuf::from("/mnt/my disk"));
        assert!(!mounts[1].whole);
        let remote: Vec<bool> = mounts.iter().map(|m| m.remote).collect();
        assert_eq!(remote, [false, false, true, true]);
    }

    #[test]
    fn rule_paths_on_a_network_filesystem_are_never_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("local");
        let away = dir.path().join("nfs");
        let inner = away.join("inner");
        for d in [&local, &inner] {
            fs::create_dir_all(d).unwrap();
        }
        let mounts = [
            MountPoint {
                point: "/".into(),
                whole: true,
                remote: false,
            },
            // A network filesystem, and a local one mounted inside it.
            MountPoint {
                point: away.clone(),
                whole: true,
                remote: true,
            },
            MountPoint {
                point: inner.clone(),
                whole: true,
                remote: false,
            },
        ];
        assert!(on_remote(&away.join("secret"), &mounts));
        assert!(!on_remote(&inner.join("secret"), &mounts));
        assert!(!on_remote(&local, &mounts));
        let (on_nfs, on_disk) = (away.to_string_lossy(), local.to_string_lossy());
        let deny = [(1, on_nfs.as_ref()), (2, on_disk.as_ref())];
        let paths = PathRules::build(&deny, &[]);
        let ids = Identities::resolve_in(&deny, &[], &paths, &mounts);
        // The directory on the network filesystem exists, but only the
        // local rule path has an identity, and nothing settles a file.
        assert!(ids.lookup(&away).is_none_or(|rule| rule.deny_rule != 1));
        assert_eq!(ids.lookup(&local).unwrap().deny_rule, 2);
        assert!(!ids.settle);
        let sources = mount_sources_in(&deny, &mounts);
        assert!(sources.iter().all(|(_, m)| m.below != 1 && m.at != 1));
        assert!(sources.iter().any(|(_, m)| m.below == 2));
    }

    #[test]
    fn the_kernel_device_number_is_major_shifted_by_20() {
        let meta = fs::metadata("/").unwrap();
        let key = key_of(&meta);
        assert_eq!(key.dev >> 20, libc::major(meta.dev()));
        assert_eq!(key.dev & 0xfffff, libc::minor(meta.dev()));
    }

    #[test]
    fn a_file_handle_gives_the_generation_where_its_layout_is_known() {
        let ino: u64 = 0x1_0000_0abc;
        // ext4: number, generation.
        assert_eq!(generation_in_handle(1, &[0xabc, 77], 0xabc), Some(77));
        // tmpfs: generation, number in two halves.
        assert_eq!(generation_in_handle(1, &[77, 0xabc, 1], ino), Some(77));
        // XFS, 64-bit numbers: number in two halves, generation.
        assert_eq!(generation_in_handle(0x81, &[0xabc, 1, 77], ino), Some(77));
        // A handle that does not hold the inode's number says nothing.
        assert_eq!(generation_in_handle(1, &[0xabd, 77], 0xabc), None);
        assert_eq!(generation_in_handle(1, &[77, 0xabc, 2], ino), None);
        // btrfs: number, subvolume, generation.
        assert_eq!(
            generation_in_handle(0x4d, &[0xabc, 0, 5, 0, 77], 0xabc),
            Some(77)
        );
        assert_eq!(
            generation_in_handle(0x4e, &[0xabc, 0, 5, 0, 77, 0x100, 0, 3], 0xabc),
            Some(77)
        );
        assert_eq!(
            generation_in_handle(0x4d, &[0xabd, 0, 5, 0, 77], 0xabc),
            None
        );
        // Nor does a layout not known.
        assert_eq!(generation_in_handle(0x99, &[0xabc, 77], 0xabc), None);
    }

    #[test]
    fn a_files_generation_is_the_one_the_kernel_keeps() {
        /// `FS_IOC_GETVERSION`: `_IOR('v', 1, long)`.
        const FS_IOC_GETVERSION: libc::c_ulong = 0x8008_7601;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let meta = fs::metadata(&file).unwrap();
        let generation = generation_of(&file, Follow::Links, meta.ino())
            .expect("no generation in the file handle");
        let mut kept: libc::c_long = 0;
        let open = fs::File::open(&file).unwrap();
        // SAFETY: an open file and a long for the answer.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&open),
                FS_IOC_GETVERSION,
                &mut kept,
            )
        };
        if rc == 0 {
            // ext2/3/4, XFS, btrfs answer the ioctl: the same number.
            assert_eq!(u64::from(generation), kept as u64 & 0xffff_ffff);
        } else {
            // tmpfs does not; it gives every inode a random generation,
            // which the handle must have carried.
            assert_ne!(
                generation, 0,
                "a zero generation from the handle of {file:?}"
            );
        }
        // The number of another inode is not this file's.
        assert_eq!(generation_of(&file, Follow::Links, meta.ino() + 1), None);
        // Its key in `FILE_INODES` carries it on these filesystems.
        if fs_magic(&file).is_some_and(keyed_by_generation) {
            assert_eq!(
                identity_key(&file, &meta, Follow::Links, fs_magic(&file)).generation,
                generation
            );
        }
    }
}
