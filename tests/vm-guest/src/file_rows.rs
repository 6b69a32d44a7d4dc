//! Every file row, in block mode, monitor mode and on the audit tier.

use std::{
    ffi::CString,
    fs,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    sync::OnceLock,
};

use semconv::{attr, event};
use serde_json::{Value, json};

use crate::{
    cases::TestResult,
    rows::{Action, Expect, Op, Untouched, suite},
};

const DENIED: &str = "/srv/sgf/secret";
const OTHER: &str = "/srv/sgf/public";
const LOOKALIKE: &str = "/srv/sgf/secrets.d";
/// A denied file two levels below a directory whose rename is refused.
const ANCESTOR: &str = "/srv/sga/inner";
const BELOW_ANCESTOR: &str = "/srv/sga/inner/secret/key";
/// A denied path that does not exist: a symbolic link planted there is
/// refused (`/etc/ld.so.preload` in miniature).
const PLANTED: &str = "/srv/sgf/ld.so.preload";
/// Directory components under DENIED for the deep unlink: deeper than the
/// 64 levels a path walk once followed.
const DEEP: usize = 70;
/// One long name, repeated until a path passes PATH_MAX (4096 bytes).
const LONG_NAME_LEN: usize = 200;
const LONG_LEVELS: usize = 25;

fn deep_path() -> String {
    deep_path_of(DEEP)
}

fn deep_path_of(levels: usize) -> String {
    format!("{DENIED}{}/f", "/d".repeat(levels))
}

/// The path of the file under OTHER that is longer than PATH_MAX: it can be
/// reached only relative to a directory descriptor.
fn long_levels() -> Vec<String> {
    (0..LONG_LEVELS)
        .map(|i| format!("{i:02}{}", "x".repeat(LONG_NAME_LEN - 2)))
        .collect()
}

/// What the programs report for `name` at the end of the long path: its
/// innermost whole components that fit in PATH_MAX - 1 bytes.
fn long_path_reported(name: &str) -> String {
    let mut parts: Vec<String> = vec![name.into()];
    parts.extend(long_levels().into_iter().rev());
    let mut path = String::new();
    for part in parts {
        if path.len() + part.len() + 1 > 4095 {
            break;
        }
        path = format!("/{part}{path}");
    }
    path
}

/// Makes the long path below OTHER, one directory at a time.
fn make_long_path() -> Result<(), String> {
    let mut dir = fs::File::open(OTHER).map_err(|e| format!("open {OTHER}: {e}"))?;
    for name in long_levels() {
        let c = CString::new(name).unwrap();
        // SAFETY: valid descriptor and C string.
        unsafe {
            if libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) != 0 {
                return Err(format!("mkdirat: errno {}", errno()));
            }
            let fd = libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY,
            );
            if fd < 0 {
                return Err(format!("openat: errno {}", errno()));
            }
            dir = std::os::fd::FromRawFd::from_raw_fd(fd);
        }
    }
    for name in ["f", "g"] {
        let c = CString::new(name).unwrap();
        // SAFETY: as above.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY,
                0o644,
            )
        };
        if fd < 0 {
            return Err(format!("create the long path's {name}: errno {}", errno()));
        }
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The deepest directory of the long path, opened step by step
/// (descriptors relative to descriptors: no single path names it).
fn long_dir() -> Result<fs::File, i32> {
    let mut dir = fs::File::open(OTHER).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    for name in long_levels() {
        let c = CString::new(name).unwrap();
        // SAFETY: valid descriptor and C string.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        dir = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    }
    Ok(dir)
}

/// Reads `f` at the end of the long path.
fn read_long_path() -> Result<(), i32> {
    let dir = long_dir()?;
    let f = CString::new("f").unwrap();
    // SAFETY: valid descriptor and C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), f.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(errno());
    }
    unsafe { libc::close(fd) };
    Ok(())
}

/// Unlinks `g` at the end of the long path.
fn unlink_long_path() -> Result<(), i32> {
    let dir = long_dir()?;
    let g = CString::new("g").unwrap();
    // SAFETY: valid descriptor and C string.
    match unsafe { libc::unlinkat(dir.as_raw_fd(), g.as_ptr(), 0) } {
        0 => Ok(()),
        _ => Err(errno()),
    }
}

/// Where the denied directory is bind-mounted: another path, the same
/// files.
const BOUND: &str = "/mnt/sgb";

/// An overlay whose lower layer is the denied directory: its files, read
/// through the overlay, are the denied files.
const OVERLAY: &str = "/srv/sgo";

fn overlay_merged() -> String {
    path(OVERLAY, "merged")
}

/// The path a refused read through the overlay is reported with. Before
/// Linux 6.6 overlayfs opens the lower file with the overlay's path (the
/// agent finds the denied file by its inode); from 6.6 on with the lower
/// file's path on overlayfs' private clone of the layer's mount, a mount
/// with no place in any namespace (named from `/`, like an `open_tree`
/// clone); the agent finds it by identity.
fn overlay_reported(name: &str) -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < (6, 6) {
        path(&overlay_merged(), name)
    } else {
        format!("/{name}")
    }
}

/// Mounts the overlay (after the denied files are made).
fn mount_overlay() -> Result<(), String> {
    for dir in ["upper", "work", "merged"] {
        fs::create_dir_all(path(OVERLAY, dir)).map_err(|e| e.to_string())?;
    }
    let merged = CString::new(overlay_merged()).unwrap();
    let data = CString::new(format!(
        "lowerdir={DENIED},upperdir={OVERLAY}/upper,workdir={OVERLAY}/work"
    ))
    .unwrap();
    // SAFETY: valid C strings.
    if unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            merged.as_ptr(),
            c"overlay".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    } != 0
    {
        return Err(format!(
            "mount overlay on {OVERLAY}/merged: errno {}",
            errno()
        ));
    }
    Ok(())
}

/// A jail with a tree of its own that looks like the denied one: inside
/// it, `/srv/sgf/secret/x` is `JAIL/srv/sgf/secret/x`, which no rule
/// denies.
const JAIL: &str = "/srv/sgj";

/// Runs `f` with this process's root changed to `root`, then goes back to
/// the real root (through a descriptor of it kept open: what any root
/// process in a chroot can do too).
fn in_chroot(root: &str, f: impl Fn() -> Result<(), i32>) -> Result<(), i32> {
    let root = CString::new(root).unwrap();
    let dot = CString::new(".").unwrap();
    let slash = CString::new("/").unwrap();
    // SAFETY: plain syscalls on C strings and descriptors we own.
    unsafe {
        let real_root = libc::open(slash.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
        let cwd = libc::open(dot.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
        if real_root < 0 || cwd < 0 {
            return Err(errno());
        }
        if libc::chroot(root.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 {
            return Err(errno());
        }
        let result = f();
        let back = libc::fchdir(real_root) == 0
            && libc::chroot(dot.as_ptr()) == 0
            && libc::fchdir(cwd) == 0;
        libc::close(real_root);
        libc::close(cwd);
        assert!(back, "could not leave the chroot: errno {}", errno());
        result
    }
}

/// `open_tree(OPEN_TREE_CLONE)` of the denied directory, then a read of
/// `read` inside the clone.
fn open_tree_clone_read() -> Result<(), i32> {
    let dir = CString::new(DENIED).unwrap();
    let name = CString::new("read").unwrap();
    // SAFETY: plain syscalls on C strings and descriptors we own.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            dir.as_ptr(),
            1 | libc::O_CLOEXEC, // OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
        ) as i32;
        if tree < 0 {
            return Err(errno());
        }
        let fd = libc::openat(tree, name.as_ptr(), libc::O_RDONLY);
        let result = if fd < 0 { Err(errno()) } else { Ok(()) };
        if fd >= 0 {
            libc::close(fd);
        }
        libc::close(tree);
        result
    }
}

/// A denied path that does not exist when the agent starts; its directory
/// is made later through a bind mount of its parent (another name, which
/// no path rule speaks of), then the file.
const LATER: &str = "/srv/sgn/dir/secret";
const LATER_BOUND: &str = "/mnt/sgn";

/// Makes [`LATER`] through [`LATER_BOUND`] and reads it there: refused
/// once the agent has entered the new file's identity.
fn read_made_later() -> Result<(), i32> {
    let step = |what: &str, e: std::io::Error| {
        eprintln!("made-later: {what}: {e}");
        e.raw_os_error().unwrap_or(-1)
    };
    fs::create_dir_all(LATER_BOUND).map_err(|e| step("mkdir the mount point", e))?;
    let (src, dst) = (
        CString::new("/srv/sgn").unwrap(),
        CString::new(LATER_BOUND).unwrap(),
    );
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(step("bind mount", std::io::Error::last_os_error()));
    }
    // Each step gives the agent a moment to see it.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(1500));
    fs::create_dir(path(LATER_BOUND, "dir")).map_err(|e| step("mkdir", e))?;
    settle();
    fs::write(path(LATER_BOUND, "dir/secret"), "data\n").map_err(|e| step("create", e))?;
    settle();
    open_read(&path(LATER_BOUND, "dir/secret"))
}

/// A denied directory with a filesystem mounted below it before the agent
/// starts, and where that filesystem is mounted a second time later.
const RULED_MOUNTS: &str = "/srv/sgm";
const SECOND_MOUNT: &str = "/mnt/sgm2";

fn ruled_mount() -> String {
    path(RULED_MOUNTS, "fs")
}

/// mount(2) of a tmpfs on `target` (`source` `None`), or a bind of
/// `source` there: `Err(errno)` on failure.
fn mount_at(source: Option<&str>, target: &str) -> Result<(), i32> {
    let target = CString::new(target).unwrap();
    let source = source.map(|s| CString::new(s).unwrap());
    let (src, fstype, flags) = match &source {
        Some(s) => (s.as_c_str(), std::ptr::null(), libc::MS_BIND),
        None => (c"tmpfs", c"tmpfs".as_ptr(), 0),
    };
    // SAFETY: valid C strings, or null where mount(2) allows it.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype,
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Mounts a tmpfs below [`RULED_MOUNTS`] with a file in it (set-up).
fn mount_below_ruled() -> Result<(), String> {
    fs::create_dir_all(ruled_mount()).map_err(|e| e.to_string())?;
    mount_at(None, &ruled_mount())
        .map_err(|e| format!("mount tmpfs on {}: errno {e}", ruled_mount()))?;
    fs::write(path(&ruled_mount(), "x"), "data\n").map_err(|e| e.to_string())
}

/// The filesystem below [`RULED_MOUNTS`] mounted again at
/// [`SECOND_MOUNT`], where no rule speaks of it: its root carries the
/// rule of the place it was mounted at when the policy was compiled.
fn read_through_second_mount() -> Result<(), i32> {
    fs::create_dir_all(SECOND_MOUNT).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    mount_at(Some(&ruled_mount()), SECOND_MOUNT)?;
    open_read(&path(SECOND_MOUNT, "x"))
}

/// A filesystem mounted while the agent runs, at [`LATE_STAGE`], then
/// bound below [`RULED_MOUNTS`] (at [`late_ruled`], a directory made
/// before the agent started).
const LATE_STAGE: &str = "/tmp/sg-late";

fn late_ruled() -> String {
    path(RULED_MOUNTS, "late")
}

/// Mounts a tmpfs at [`LATE_STAGE`] with a file in it, binds it below the
/// denied directory, then reads the file at [`LATE_STAGE`]: once the mount
/// table has settled the policy is compiled again, and the filesystem's
/// root carries the rule of the place it is now mounted at (the compile
/// follows the mount, it is not part of it).
fn read_mounted_later() -> Result<(), i32> {
    fs::create_dir_all(LATE_STAGE).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    mount_at(None, LATE_STAGE)?;
    fs::write(path(LATE_STAGE, "x"), "data\n").map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    mount_at(Some(LATE_STAGE), &late_ruled())?;
    // One read (monitor mode must report exactly one), well after the
    // quarter second of quiet and the compile.
    std::thread::sleep(std::time::Duration::from_secs(3));
    open_read(&path(LATE_STAGE, "x"))
}

/// Where a filesystem made while the agent runs is filled, before it is
/// moved below the denied directory.
const STAGING: &str = "/tmp/sg-staging";

fn new_mount_point() -> String {
    path(DENIED, "mnt")
}

/// A tmpfs mounted below the denied directory after the policy was
/// compiled (its root is no known root), holding a file made before the
/// move: a read of it is judged by its path.
fn read_on_new_mount() -> Result<(), i32> {
    let mount = |src: &str, dst: &str, fstype: Option<&str>, flags| {
        let (src, dst) = (CString::new(src).unwrap(), CString::new(dst).unwrap());
        let fstype = fstype.map(|t| CString::new(t).unwrap());
        // SAFETY: valid C strings (or null for the type).
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
                flags,
                std::ptr::null(),
            )
        };
        if rc == 0 { Ok(()) } else { Err(errno()) }
    };
    fs::create_dir_all(STAGING).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    mount("tmpfs", STAGING, Some("tmpfs"), 0)?;
    fs::write(path(STAGING, "x"), "data\n").map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    mount(STAGING, &new_mount_point(), None, libc::MS_MOVE)?;
    open_read(&path(&new_mount_point(), "x"))
}

/// A read of the denied file through `/proc/PID/root` of a process in a
/// mount namespace of its own: the same file in another namespace's tree.
fn proc_root_read() -> Result<(), i32> {
    // SAFETY: the child calls only async-signal-safe functions.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(errno());
    }
    if child == 0 {
        unsafe {
            libc::unshare(libc::CLONE_NEWNS);
            libc::sleep(60);
            libc::_exit(0);
        }
    }
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let start = std::time::Instant::now();
    while ns(&child.to_string()) == ns("self") && start.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let result = if ns(&child.to_string()) == ns("self") {
        Err(-1)
    } else {
        open_read(&format!("/proc/{child}/root{DENIED}/proc-root"))
    };
    // SAFETY: our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    result
}

/// Opens `path` for reading and closes it.
fn open_read(path: &str) -> Result<(), i32> {
    let p = CString::new(path).unwrap();
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(errno());
    }
    unsafe { libc::close(fd) };
    Ok(())
}

/// Passes `fd` to ourselves over a Unix socket (`SCM_RIGHTS`). The kernel
/// drops a descriptor whose receipt `file_receive` refuses and sets
/// `MSG_CTRUNC`: that is reported as EPERM here.
fn pass_fd(fd: i32) -> Result<(), i32> {
    let mut pair = [0i32; 2];
    // SAFETY: plain syscalls on buffers we own; every descriptor made here
    // is closed before returning.
    unsafe {
        if libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, pair.as_mut_ptr()) != 0 {
            return Err(errno());
        }
        let space = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize;
        let mut control = vec![0u8; space];
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        let sent = libc::sendmsg(pair[0], &msg, 0);
        let result = if sent != 1 {
            Err(errno())
        } else {
            control.iter_mut().for_each(|b| *b = 0);
            msg.msg_controllen = space;
            msg.msg_flags = 0;
            if libc::recvmsg(pair[1], &mut msg, 0) != 1 {
                Err(errno())
            } else {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
                    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                        Err(libc::EPERM)
                    } else {
                        Err(-1)
                    }
                } else {
                    libc::close(std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<i32>(),
                    ));
                    Ok(())
                }
            }
        };
        libc::close(pair[0]);
        libc::close(pair[1]);
        result
    }
}

/// An ext4 filesystem on a loop device, with a denied file: ext4 gives a
/// freed inode number to the next file made in the same place, so once
/// the denied file is removed (monitor mode lets it go) a new file takes
/// its number, and with it, but for its generation, its identity.
const EXT4: &str = "/srv/sge";
const EXT4_IMAGE: &str = "/tmp/sge.img";

fn reused_denied() -> String {
    path(EXT4, "secret")
}

/// Makes and mounts [`EXT4`] with the denied file in it (set-up).
fn mount_ext4() -> Result<(), String> {
    fs::create_dir_all(EXT4).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(EXT4_IMAGE);
    run_ok("/bin/mke2fs", &["-q", "-F", "-t", "ext4", EXT4_IMAGE, "8M"])?;
    run_ok(
        "/bin/mount",
        &["-t", "ext4", "-o", "loop", EXT4_IMAGE, EXT4],
    )?;
    fs::write(reused_denied(), "data\n").map_err(|e| e.to_string())
}

/// Removes the denied file on [`EXT4`], makes a new one, which takes its
/// inode number, and reads it.
fn read_reused_inode_number() -> Result<(), i32> {
    use std::os::unix::fs::MetadataExt as _;
    let os = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let number = fs::metadata(reused_denied()).map_err(os)?.ino();
    fs::remove_file(reused_denied()).map_err(os)?;
    fs::write(path(EXT4, "fresh"), "data\n").map_err(os)?;
    let fresh = fs::metadata(path(EXT4, "fresh")).map_err(os)?.ino();
    if fresh != number {
        eprintln!("SGTEST-NOTE the new file took inode {fresh}, not the freed {number}");
        return Err(libc::ESTALE);
    }
    open_read(&path(EXT4, "fresh"))
}

/// A btrfs filesystem with two subvolumes, `sub` (with a denied
/// directory) and `twin`, made alike: btrfs numbers inodes per subvolume
/// and `stat` gives each subvolume a device number of its own, none of
/// them the superblock's. `sub` is mounted a second time on
/// [`BTRFS_SUBVOL`].
const BTRFS: &str = "/srv/sgb";
const BTRFS_SUBVOL: &str = "/srv/sgb-sub";
const BTRFS_IMAGE: &str = "/tmp/sgb.img";

fn btrfs_denied() -> String {
    path(BTRFS, "sub/secret")
}

/// Makes and mounts [`BTRFS`] and [`BTRFS_SUBVOL`] (set-up).
fn mount_btrfs() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    fs::create_dir_all(BTRFS).map_err(|e| e.to_string())?;
    fs::create_dir_all(BTRFS_SUBVOL).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(BTRFS_IMAGE);
    // Sparse: the filesystem's smallest size, little of it written.
    fs::File::create(BTRFS_IMAGE)
        .and_then(|f| f.set_len(128 << 20))
        .map_err(|e| format!("{BTRFS_IMAGE}: {e}"))?;
    run_ok("/bin/mkfs.btrfs", &["-q", "-f", BTRFS_IMAGE])?;
    run_ok(
        "/bin/mount",
        &["-t", "btrfs", "-o", "loop", BTRFS_IMAGE, BTRFS],
    )?;
    for sub in ["sub", "twin", "sent"] {
        run_ok(
            "/bin/btrfs",
            &["-q", "subvolume", "create", &path(BTRFS, sub)],
        )?;
    }
    for dir in ["shelf", "drop"] {
        fs::create_dir(path(BTRFS, dir)).map_err(|e| e.to_string())?;
    }
    // A read-only subvolume (what `btrfs send` needs) with a denied file.
    fs::write(path(BTRFS, "sent/secret"), "data\n").map_err(|e| e.to_string())?;
    run_ok(
        "/bin/btrfs",
        &["property", "set", "-ts", &path(BTRFS, "sent"), "ro", "true"],
    )?;
    // The same names made in the same order in both subvolumes, in one
    // transaction: the same inode numbers (and generations).
    for sub in ["sub", "twin"] {
        let dir = path(BTRFS, &format!("{sub}/secret"));
        fs::create_dir(&dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
        fs::write(path(&dir, "read"), "data\n").map_err(|e| e.to_string())?;
        fs::create_dir(path(BTRFS, &format!("{sub}/public"))).map_err(|e| e.to_string())?;
    }
    let number = |p: &str| {
        fs::metadata(p)
            .map(|m| m.ino())
            .map_err(|e| format!("{p}: {e}"))
    };
    let (denied, twin) = (
        number(&path(&btrfs_denied(), "read"))?,
        number(&path(BTRFS, "twin/secret/read"))?,
    );
    if denied != twin {
        return Err(format!(
            "btrfs gave the twin file inode {twin}, not {denied}: the row would prove nothing"
        ));
    }
    fs::hard_link(
        path(&btrfs_denied(), "read"),
        path(BTRFS, "sub/public/alias"),
    )
    .map_err(|e| format!("link: {e}"))?;
    // `sub` again, by the loop device the first mount uses (a second loop
    // device on the same image would be a second device of the filesystem).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let device = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(BTRFS))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|rest| rest.split(' ').nth(1))
        .ok_or_else(|| format!("{BTRFS} is not in mountinfo"))?
        .to_string();
    run_ok(
        "/bin/mount",
        &["-t", "btrfs", "-o", "subvol=sub", &device, BTRFS_SUBVOL],
    )
}

/// `ioctl(fd, cmd, arg)` made through the 32-bit system call entry
/// (`int 0x80`), as a 32-bit program makes it: the kernel takes it
/// through `compat_sys_ioctl`. `arg` must lie below 4 GiB ([`low_page`]).
fn compat_ioctl(fd: i32, cmd: u32, arg: u32) -> Result<(), i32> {
    let ret: u64;
    // SAFETY: ioctl(2), number 54 of the i386 table. LLVM keeps rbx for
    // itself, so the descriptor goes through another register.
    unsafe {
        std::arch::asm!(
            "xchg {fd}, rbx",
            "int 0x80",
            "xchg {fd}, rbx",
            fd = inout(reg) u64::from(fd as u32) => _,
            inlateout("rax") 54u64 => ret,
            in("rcx") u64::from(cmd),
            in("rdx") u64::from(arg),
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    match ret as u32 as i32 {
        r if r < 0 => Err(-r),
        _ => Ok(()),
    }
}

/// A zeroed page below 4 GiB (`MAP_32BIT`), for a compat ioctl's argument.
fn low_page() -> Result<&'static mut [u8; 4096], i32> {
    // SAFETY: a fresh anonymous mapping, never unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(&mut *p.cast::<[u8; 4096]>())
    }
}

/// `BTRFS_IOC_SNAP_CREATE_V2` of `source` as `name` in `into`, by a
/// 32-bit program (`compat_ioctl`).
fn compat_snapshot(source: &str, into: &str, name: &str) -> Result<(), i32> {
    let os = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let source = fs::File::open(source).map_err(os)?;
    let into = fs::File::open(into).map_err(os)?;
    let args = low_page()?;
    // struct btrfs_ioctl_vol_args_v2: the source's descriptor first, the
    // new subvolume's name at byte 56.
    args[..8].copy_from_slice(&i64::from(source.as_raw_fd()).to_ne_bytes());
    args[56..56 + name.len()].copy_from_slice(name.as_bytes());
    compat_ioctl(into.as_raw_fd(), 0x5000_9417, args.as_ptr() as u32)
}

fn run_ok(program: &str, args: &[&str]) -> Result<(), String> {
    let ran = safeguard_test_support::run(program, args, None, None)?;
    if ran.code == 0 {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: exit {}: {}",
            ran.code,
            ran.stderr.trim()
        ))
    }
}

fn path(dir: &str, name: &str) -> String {
    format!("{dir}/{name}")
}

fn setup() -> Result<(), String> {
    for mounted in [
        BOUND.to_string(),
        overlay_merged(),
        new_mount_point(),
        STAGING.into(),
        LATER_BOUND.into(),
        SECOND_MOUNT.into(),
        ruled_mount(),
        late_ruled(),
        LATE_STAGE.into(),
        EXT4.into(),
        BTRFS_SUBVOL.into(),
        BTRFS.into(),
    ] {
        if let Ok(mounted) = CString::new(mounted) {
            // SAFETY: valid C string; a failure (not mounted) is fine.
            unsafe { libc::umount2(mounted.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _ = fs::remove_dir_all(OVERLAY);
    mount_ext4()?;
    mount_btrfs()?;
    let _ = fs::remove_dir_all("/srv/sgn");
    fs::create_dir_all("/srv/sgn").map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(RULED_MOUNTS);
    mount_below_ruled()?;
    fs::create_dir_all(late_ruled()).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all("/srv/sgf");
    let _ = fs::remove_dir_all("/srv/sga");
    let below = std::path::Path::new(BELOW_ANCESTOR).parent().unwrap();
    let deep = deep_path();
    let deep_dir = std::path::Path::new(&deep).parent().unwrap();
    for dir in [
        DENIED,
        OTHER,
        LOOKALIKE,
        &path(DENIED, "dir"),
        &new_mount_point(),
        below.to_str().unwrap(),
        "/srv/sga/beside",
        deep_dir.to_str().unwrap(),
    ] {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    fs::write(BELOW_ANCESTOR, "data\n").map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(JAIL);
    let jailed = format!("{JAIL}{DENIED}");
    fs::create_dir_all(&jailed).map_err(|e| format!("mkdir {jailed}: {e}"))?;
    fs::write(format!("{jailed}/x"), "data\n").map_err(|e| e.to_string())?;
    fs::write(&deep, "data\n").map_err(|e| e.to_string())?;
    let deeper = deep_path_of(300);
    fs::create_dir_all(std::path::Path::new(&deeper).parent().unwrap())
        .map_err(|e| e.to_string())?;
    fs::write(&deeper, "data\n").map_err(|e| e.to_string())?;
    fs::write(path(OTHER, "linkable"), "data\n").map_err(|e| e.to_string())?;
    make_long_path()?;
    fs::write(path(DENIED, "prelinked"), "data\n").map_err(|e| e.to_string())?;
    fs::hard_link(path(DENIED, "prelinked"), path(OTHER, "prelinked-alias"))
        .map_err(|e| format!("link: {e}"))?;
    fs::write(path(DENIED, "bound-unlink"), "data\n").map_err(|e| e.to_string())?;
    fs::create_dir_all(BOUND).map_err(|e| e.to_string())?;
    let (src, dst) = (CString::new(DENIED).unwrap(), CString::new(BOUND).unwrap());
    // SAFETY: valid C strings.
    if unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(format!("bind mount {DENIED} on {BOUND}: errno {}", errno()));
    }
    for name in [
        "read",
        "created",
        "unlink",
        "rename",
        "truncate",
        "chmod",
        "chown",
        "mmap",
        "ioctl",
        "link",
        "receive",
        "proc-root",
    ] {
        let p = path(DENIED, name);
        fs::write(&p, "data\n").map_err(|e| format!("write {p}: {e}"))?;
    }
    fs::write(path(OTHER, "incoming"), "data\n").map_err(|e| e.to_string())?;
    mount_overlay()?;
    fs::write(path(LOOKALIKE, "x"), "data\n").map_err(|e| e.to_string())?;
    fs::write(path(DENIED, "prog"), "#!/bin/sh\nexit 0\n").map_err(|e| e.to_string())?;
    fs::set_permissions(path(DENIED, "prog"), fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    // Descriptors opened before the agent starts: mmap and ioctl are judged
    // on files that are already open.
    let mut held = held_files().lock().unwrap();
    held.clear();
    for name in ["mmap", "ioctl", "receive"] {
        held.push(fs::File::open(path(DENIED, name)).map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn held_files() -> &'static std::sync::Mutex<Vec<fs::File>> {
    static HELD: OnceLock<std::sync::Mutex<Vec<fs::File>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

fn held_fd(i: usize) -> i32 {
    held_files().lock().unwrap()[i].as_raw_fd()
}

fn run(program: &'static str, args: &[&str]) -> Action {
    Action::Run(program, args.iter().map(|s| s.to_string()).collect())
}

/// A shell command line; the shell itself performs the operation.
fn sh(command: &str) -> Action {
    run("/bin/sh", &["-c", command])
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

fn ops() -> Vec<Op> {
    let file_op = |row, event, p: String, attributes: Vec<(&'static str, Value)>, action| Op {
        row,
        event,
        key: attr::FILE_PATH,
        value: p,
        attributes,
        action,
    };
    vec![
        file_op(
            "files.open.read",
            event::FILE_OPEN,
            path(DENIED, "read"),
            vec![(attr::FILE_OPEN_MODE, json!(["read"]))],
            run("/bin/cat", &[&path(DENIED, "read")]),
        ),
        // O_CREAT on a file that exists: judged at the open. Creating a
        // new one is judged before the file is made (`files.mknod.create`).
        file_op(
            "files.open.create",
            event::FILE_OPEN,
            path(DENIED, "created"),
            vec![(attr::FILE_OPEN_MODE, json!(["write", "create", "truncate"]))],
            sh(&format!("echo x > {}", path(DENIED, "created"))),
        ),
        // Inside a chroot of /srv/sgf, the denied file is /secret/read.
        file_op(
            "files.open.chroot",
            event::FILE_OPEN,
            path(DENIED, "read"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            Action::Call(Box::new(|| {
                in_chroot("/srv/sgf", || open_read("/secret/read"))
            })),
        ),
        // A hard link made before the agent started, in an allowed
        // directory: the file answers to its identity.
        file_op(
            "files.open.hard-link-before",
            event::FILE_OPEN,
            path(OTHER, "prelinked-alias"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run("/bin/cat", &[&path(OTHER, "prelinked-alias")]),
        ),
        // btrfs: a hard link made before the agent started, and another
        // mount of the subvolume; `stat` gives the subvolume's device.
        file_op(
            "files.open.btrfs-hard-link-before",
            event::FILE_OPEN,
            path(BTRFS, "sub/public/alias"),
            vec![(attr::SECURITY_RULE_NAME, json!(btrfs_denied()))],
            run("/bin/cat", &[&path(BTRFS, "sub/public/alias")]),
        ),
        file_op(
            "files.open.btrfs-subvolume-mount",
            event::FILE_OPEN,
            path(BTRFS_SUBVOL, "secret/read"),
            vec![(attr::SECURITY_RULE_NAME, json!(btrfs_denied()))],
            run("/bin/cat", &[&path(BTRFS_SUBVOL, "secret/read")]),
        ),
        // A snapshot or a send stream copies a whole subvolume, the denied
        // file in it too, without opening it: the ioctl is refused. A
        // snapshot's ioctl is on the directory it goes into.
        file_op(
            "files.ioctl.btrfs-snapshot",
            event::FILE_IOCTL,
            BTRFS.into(),
            vec![
                (attr::SECURITY_RULE_NAME, json!(btrfs_denied())),
                // BTRFS_IOC_SNAP_CREATE_V2
                (attr::FILE_IOCTL_CMD, json!(0x5000_9417u32)),
            ],
            run(
                "/bin/btrfs",
                &[
                    "-q",
                    "subvolume",
                    "snapshot",
                    &path(BTRFS, "sub"),
                    &path(BTRFS, "snap"),
                ],
            ),
        ),
        // The same, by a 32-bit program: on kernels with the hook,
        // `file_ioctl_compat` sees it, not `file_ioctl`.
        file_op(
            "files.ioctl.btrfs-snapshot-compat",
            event::FILE_IOCTL,
            path(BTRFS, "drop"),
            vec![
                (attr::SECURITY_RULE_NAME, json!(btrfs_denied())),
                (attr::FILE_IOCTL_CMD, json!(0x5000_9417u32)),
                (attr::HOOK, json!("lsm/file_ioctl_compat")),
            ],
            Action::Call(Box::new(|| {
                compat_snapshot(&path(BTRFS, "sub"), &path(BTRFS, "drop"), "snap")
            })),
        ),
        file_op(
            "files.ioctl.btrfs-send",
            event::FILE_IOCTL,
            path(BTRFS, "sent"),
            vec![
                (attr::SECURITY_RULE_NAME, json!(path(BTRFS, "sent/secret"))),
                // BTRFS_IOC_SEND
                (attr::FILE_IOCTL_CMD, json!(0x4048_9426u32)),
            ],
            run(
                "/bin/btrfs",
                &["-q", "send", "-f", "/tmp/sgb.send", &path(BTRFS, "sent")],
            ),
        ),
        file_op(
            "files.open.bind-mount",
            event::FILE_OPEN,
            path(BOUND, "read"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run("/bin/cat", &[&path(BOUND, "read")]),
        ),
        file_op(
            "files.unlink.bind-mount",
            event::FILE_UNLINK,
            path(BOUND, "bound-unlink"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run("/bin/rm", &[&path(BOUND, "bound-unlink")]),
        ),
        // The same, unprivileged: a user namespace gives the right to chroot.
        file_op(
            "files.open.chroot-userns",
            event::FILE_OPEN,
            path(DENIED, "read"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run(
                "/bin/safeguard-vm-tests",
                &["--userns-chroot", "/srv/sgf", "/secret/read"],
            ),
        ),
        // A setuid-root program run by a user: the event names both, the
        // effective uid as process.user.id.
        file_op(
            "files.open.setuid",
            event::FILE_OPEN,
            path(DENIED, "read"),
            vec![
                (attr::SECURITY_RULE_NAME, json!(DENIED)),
                (attr::PROCESS_USER_ID, json!(0)),
                (attr::PROCESS_REAL_USER_ID, json!(1000)),
            ],
            run(
                "/bin/safeguard-vm-tests",
                &["--setuid-read", &path(DENIED, "read")],
            ),
        ),
        file_op(
            "files.open.proc-root",
            event::FILE_OPEN,
            path(DENIED, "proc-root"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            Action::Call(Box::new(proc_root_read)),
        ),
        file_op(
            "files.open.mounted-later",
            event::FILE_OPEN,
            path(LATE_STAGE, "x"),
            vec![(attr::SECURITY_RULE_NAME, json!(RULED_MOUNTS))],
            Action::Call(Box::new(read_mounted_later)),
        ),
        file_op(
            "files.open.second-mount",
            event::FILE_OPEN,
            path(SECOND_MOUNT, "x"),
            vec![(attr::SECURITY_RULE_NAME, json!(RULED_MOUNTS))],
            Action::Call(Box::new(read_through_second_mount)),
        ),
        file_op(
            "files.open.made-later",
            event::FILE_OPEN,
            path(LATER_BOUND, "dir/secret"),
            vec![(attr::SECURITY_RULE_NAME, json!(LATER))],
            Action::Call(Box::new(read_made_later)),
        ),
        file_op(
            "files.open.new-mount",
            event::FILE_OPEN,
            path(&new_mount_point(), "x"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            Action::Call(Box::new(read_on_new_mount)),
        ),
        file_op(
            "files.open.overlay",
            event::FILE_OPEN,
            overlay_reported("read"),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run("/bin/cat", &[&path(&overlay_merged(), "read")]),
        ),
        // A detached clone of the denied tree: a mount with no place in
        // any namespace, named `/` (d_path), reached by identity.
        file_op(
            "files.open.open-tree-clone",
            event::FILE_OPEN,
            "/read".into(),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            Action::Call(Box::new(open_tree_clone_read)),
        ),
        file_op(
            "files.open.long-path",
            event::FILE_OPEN,
            long_path_reported("f"),
            vec![
                (attr::FILE_PATH_TRUNCATED, json!(true)),
                (
                    attr::SECURITY_RULE_NAME,
                    json!(semconv::rule::PATH_UNRESOLVED),
                ),
            ],
            Action::Call(Box::new(read_long_path)),
        ),
        file_op(
            "files.open.exec",
            event::FILE_OPEN,
            path(DENIED, "prog"),
            vec![(attr::FILE_OPEN_MODE, json!(["read", "exec"]))],
            sh(&format!("exec {}", path(DENIED, "prog"))),
        ),
        file_op(
            "files.unlink",
            event::FILE_UNLINK,
            path(DENIED, "unlink"),
            vec![],
            run("/bin/rm", &[&path(DENIED, "unlink")]),
        ),
        file_op(
            "files.unlink.deep",
            event::FILE_UNLINK,
            deep_path(),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run("/bin/rm", &[&deep_path()]),
        ),
        // The walk of the path_* hooks, cut by length: refused whole.
        file_op(
            "files.unlink.long-path",
            event::FILE_UNLINK,
            long_path_reported("g"),
            vec![
                (attr::FILE_PATH_TRUNCATED, json!(true)),
                (
                    attr::SECURITY_RULE_NAME,
                    json!(semconv::rule::PATH_UNRESOLVED),
                ),
            ],
            Action::Call(Box::new(unlink_long_path)),
        ),
        file_op(
            "files.open.deep-300",
            event::FILE_OPEN,
            deep_path_of(300),
            vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            run("/bin/cat", &[&deep_path_of(300)]),
        ),
        file_op(
            "files.rmdir",
            event::FILE_RMDIR,
            path(DENIED, "dir"),
            vec![],
            run("/bin/rmdir", &[&path(DENIED, "dir")]),
        ),
        file_op(
            "files.rename.source",
            event::FILE_RENAME,
            path(DENIED, "rename"),
            vec![(attr::FILE_NEW_PATH, json!(path(OTHER, "renamed")))],
            run(
                "/bin/mv",
                &[&path(DENIED, "rename"), &path(OTHER, "renamed")],
            ),
        ),
        file_op(
            "files.rename.target",
            event::FILE_RENAME,
            path(OTHER, "incoming"),
            vec![(attr::FILE_NEW_PATH, json!(path(DENIED, "moved-in")))],
            run(
                "/bin/mv",
                &[&path(OTHER, "incoming"), &path(DENIED, "moved-in")],
            ),
        ),
        file_op(
            "files.rename.ancestor",
            event::FILE_RENAME,
            ANCESTOR.to_string(),
            vec![
                (attr::FILE_NEW_PATH, json!("/srv/sga/moved")),
                (attr::SECURITY_RULE_NAME, json!(BELOW_ANCESTOR)),
            ],
            run("/bin/mv", &[ANCESTOR, "/srv/sga/moved"]),
        ),
        file_op(
            "files.truncate",
            event::FILE_TRUNCATE,
            path(DENIED, "truncate"),
            vec![],
            Action::Call(Box::new(|| {
                let p = CString::new(path(DENIED, "truncate")).unwrap();
                // SAFETY: valid C string.
                match unsafe { libc::truncate(p.as_ptr(), 0) } {
                    0 => Ok(()),
                    _ => Err(errno()),
                }
            })),
        ),
        file_op(
            "files.chmod",
            event::FILE_CHMOD,
            path(DENIED, "chmod"),
            vec![(attr::FILE_REQUESTED_MODE, json!("0600"))],
            run("/bin/chmod", &["600", &path(DENIED, "chmod")]),
        ),
        file_op(
            "files.chown",
            event::FILE_CHOWN,
            path(DENIED, "chown"),
            vec![
                (attr::FILE_REQUESTED_OWNER_ID, json!("1000")),
                (attr::FILE_REQUESTED_GROUP_ID, json!("1000")),
            ],
            run("/bin/chown", &["1000:1000", &path(DENIED, "chown")]),
        ),
        file_op(
            "files.mmap",
            event::FILE_MMAP,
            path(DENIED, "mmap"),
            vec![(attr::FILE_MMAP_PROT, json!(["read", "exec"]))],
            Action::Call(Box::new(|| {
                let fd = held_fd(0);
                // SAFETY: mapping a file we hold open; unmapped at once.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_EXEC,
                        libc::MAP_PRIVATE,
                        fd,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Err(errno());
                }
                unsafe { libc::munmap(p, 4096) };
                Ok(())
            })),
        ),
        file_op(
            "files.ioctl",
            event::FILE_IOCTL,
            path(DENIED, "ioctl"),
            vec![
                (attr::FILE_IOCTL_CMD, json!(libc::FIONREAD)),
                (attr::HOOK, json!("lsm/file_ioctl")),
            ],
            Action::Call(Box::new(|| {
                let mut n: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int.
                match unsafe { libc::ioctl(held_fd(1), libc::FIONREAD, &mut n) } {
                    0 => Ok(()),
                    _ => Err(errno()),
                }
            })),
        ),
        file_op(
            "files.ioctl.compat",
            event::FILE_IOCTL,
            path(DENIED, "ioctl"),
            vec![
                (attr::FILE_IOCTL_CMD, json!(libc::FIONREAD)),
                // Both test kernels have the compat hook (6.1 by a
                // stable backport).
                (attr::HOOK, json!("lsm/file_ioctl_compat")),
            ],
            Action::Call(Box::new(|| {
                let out = low_page()?;
                compat_ioctl(held_fd(1), libc::FIONREAD as u32, out.as_ptr() as u32)
            })),
        ),
        file_op(
            "files.link.existing",
            event::FILE_LINK,
            path(DENIED, "link"),
            vec![(attr::FILE_NEW_PATH, json!(path(OTHER, "linked")))],
            run("/bin/ln", &[&path(DENIED, "link"), &path(OTHER, "linked")]),
        ),
        file_op(
            "files.link.into",
            event::FILE_LINK,
            path(OTHER, "linkable"),
            vec![(attr::FILE_NEW_PATH, json!(path(DENIED, "linked-in")))],
            run(
                "/bin/ln",
                &[&path(OTHER, "linkable"), &path(DENIED, "linked-in")],
            ),
        ),
        file_op(
            "files.symlink",
            event::FILE_SYMLINK,
            path(DENIED, "symlink"),
            vec![],
            run("/bin/ln", &["-s", "/etc/passwd", &path(DENIED, "symlink")]),
        ),
        file_op(
            "files.symlink.planted",
            event::FILE_SYMLINK,
            PLANTED.to_string(),
            vec![(attr::SECURITY_RULE_NAME, json!(PLANTED))],
            run("/bin/ln", &["-s", &path(OTHER, "linkable"), PLANTED]),
        ),
        file_op(
            "files.mkdir",
            event::FILE_MKDIR,
            path(DENIED, "newdir"),
            vec![],
            run("/bin/mkdir", &[&path(DENIED, "newdir")]),
        ),
        file_op(
            "files.mknod",
            event::FILE_MKNOD,
            path(DENIED, "fifo"),
            vec![],
            run("/bin/mknod", &[&path(DENIED, "fifo"), "p"]),
        ),
        file_op(
            "files.mknod.create",
            event::FILE_MKNOD,
            path(DENIED, "new-file"),
            vec![],
            sh(&format!("echo x > {}", path(DENIED, "new-file"))),
        ),
        file_op(
            "files.receive",
            event::FILE_RECEIVE,
            path(DENIED, "receive"),
            vec![],
            Action::Call(Box::new(|| pass_fd(held_fd(2)))),
        ),
    ]
}

fn untouched(expect: Expect) -> Vec<Untouched> {
    let mut rows = vec![
        Untouched {
            what: "lookalike-prefix",
            key: attr::FILE_PATH,
            value: path(LOOKALIKE, "x"),
            action: run("/bin/rm", &[&path(LOOKALIKE, "x")]),
        },
        Untouched {
            what: "rename-beside-an-ancestor",
            key: attr::FILE_PATH,
            value: "/srv/sga/beside".into(),
            action: run("/bin/mv", &["/srv/sga/beside", "/srv/sga/beside2"]),
        },
        Untouched {
            what: "a-jails-own-tree",
            key: attr::FILE_PATH,
            value: path(DENIED, "x"),
            action: Action::Call(Box::new(|| {
                in_chroot(JAIL, || open_read(&path(DENIED, "x")))
            })),
        },
        // The same inode number and generation in another subvolume is
        // another file.
        Untouched {
            what: "btrfs-twin-subvolume",
            key: attr::FILE_PATH,
            value: path(BTRFS, "twin/secret/read"),
            action: run("/bin/cat", &[&path(BTRFS, "twin/secret/read")]),
        },
        // A snapshot of a subvolume with no denied file in it.
        Untouched {
            what: "btrfs-snapshot-of-another-subvolume",
            key: attr::FILE_PATH,
            value: path(BTRFS, "shelf"),
            action: run(
                "/bin/btrfs",
                &[
                    "-q",
                    "subvolume",
                    "snapshot",
                    &path(BTRFS, "twin"),
                    &path(BTRFS, "shelf/twin"),
                ],
            ),
        },
        Untouched {
            what: "mkdir-elsewhere",
            key: attr::FILE_PATH,
            value: path(LOOKALIKE, "newdir"),
            action: run("/bin/mkdir", &[&path(LOOKALIKE, "newdir")]),
        },
    ];
    // Block mode refuses to remove the denied file, so its number is not
    // freed while the rule holds.
    if expect == Expect::WouldBlock {
        rows.push(Untouched {
            what: "a-reused-inode-number",
            key: attr::FILE_PATH,
            value: path(EXT4, "fresh"),
            action: Action::Call(Box::new(read_reused_inode_number)),
        });
    }
    rows
}

fn config(mode: &str, tier: &str) -> String {
    format!(
        "files:\n  enable: true\n  mode: {mode}\n  ioctl: true\n  deny: [{DENIED}, {BELOW_ANCESTOR}, {PLANTED}, {LATER}, {RULED_MOUNTS}, {EXT4}/secret, {BTRFS}/sub/secret, {BTRFS}/sent/secret]\n  allow: [{OTHER}]\n\
         kernel:\n  tier: {tier}\n"
    )
}

pub fn block(agent: &str) -> Vec<(String, TestResult)> {
    suite(
        agent,
        "block",
        &config("block", "lsm"),
        Expect::Blocked,
        &setup,
        ops(),
        untouched(Expect::Blocked),
    )
}

pub fn monitor(agent: &str) -> Vec<(String, TestResult)> {
    suite(
        agent,
        "monitor",
        &config("monitor", "lsm"),
        Expect::WouldBlock,
        &setup,
        ops(),
        untouched(Expect::WouldBlock),
    )
}
