//! Mount rows: a denied source may not be mounted (mount(2)) or moved
//! (move_mount(2)).

use std::{ffi::CString, fs};

use semconv::{attr, event};
use serde_json::json;

use crate::{
    cases::TestResult,
    rows::{Action, Expect, Op, Untouched, suite},
};

const DENIED: &str = "/srv/sgm/secret";
const OTHER: &str = "/srv/sgm/public";

fn sh(command: &str) -> Result<(), String> {
    let ran = safeguard_test_support::run("/bin/sh", &["-c", command], None, None)?;
    if ran.code == 0 {
        Ok(())
    } else {
        Err(format!("{command}: {}", ran.stderr))
    }
}

fn setup() -> Result<(), String> {
    // Undo an earlier run: mounts first, then the directories.
    let _ = sh("umount -l /mnt/sgm/* /srv/sgm/ovlc /srv/sgm/secret/tree 2>/dev/null; true");
    let _ = fs::remove_dir_all("/srv/sgm");
    let _ = fs::remove_dir_all("/mnt/sgm");
    let _ = fs::remove_dir_all("/srv/sgm-ovl");
    for dir in [
        &format!("{DENIED}/data"),
        &format!("{DENIED}/tree"),
        &format!("{OTHER}/data"),
        "/mnt/sgm/bind",
        "/mnt/sgm/other",
        "/mnt/sgm/moved",
        "/mnt/sgm/clone",
        "/mnt/sgm/parent",
        "/mnt/sgm/otherclone",
        "/mnt/sgm/dot",
        "/mnt/sgm/relative",
        "/mnt/sgm/fd",
        "/mnt/sgm/otherfd",
        "/mnt/sgm/above",
        "/mnt/sgm/root",
        "/mnt/sgm/ovl-lower",
        "/mnt/sgm/ovl-upper",
        "/mnt/sgm/ovl-relative",
        "/mnt/sgm/ovl-escaped",
        "/mnt/sgm/ovl-ancestor",
        "/mnt/sgm/ovl-dotdot",
        "/mnt/sgm/ovl-fsconfig",
        "/mnt/sgm/ovl-other",
        "/mnt/sgm/ovl-otherrel",
        "/mnt/sgm/ovl-work",
        "/srv/sgm/w1",
        "/srv/sgm/ovlc",
        "/srv/sgm-ovl/up",
        "/srv/sgm-ovl/low",
        "/srv/sgm/public/more",
        "/srv/sgm/public/upper",
        "/srv/sgm/public/work",
    ] {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    // A mount under the denied source, to be moved while the agent runs.
    sh(&format!("mount -t tmpfs tree {DENIED}/tree"))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// open_tree(2) on the mount at `from`, then move_mount(2) it to `to`.
fn move_mount(from: &str, to: &str) -> Result<(), i32> {
    open_and_move(from, to, 0)
}

/// open_tree(2) with `OPEN_TREE_CLONE` of `from` (any directory: a
/// detached bind mount of it, whose path is "/"), then move_mount(2) to
/// `to`: the new mount API's `mount --bind`.
fn clone_and_move(from: &str, to: &str) -> Result<(), i32> {
    const OPEN_TREE_CLONE: u32 = 1;
    open_and_move(from, to, OPEN_TREE_CLONE)
}

fn open_and_move(from: &str, to: &str, flags: u32) -> Result<(), i32> {
    let (from, to, empty) = (
        CString::new(from).unwrap(),
        CString::new(to).unwrap(),
        CString::new("").unwrap(),
    );
    // SAFETY: raw syscalls with valid C strings; the fd is closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, from.as_ptr(), flags) as i32;
        if fd < 0 {
            return Err(errno());
        }
        const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
        let rc = libc::syscall(
            libc::SYS_move_mount,
            fd,
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        let err = errno();
        libc::close(fd);
        if rc == 0 { Ok(()) } else { Err(err) }
    }
}

/// The new mount API's overlay on `target`: fsopen(2), fsconfig(2) of
/// each `key=value`, then fsmount(2) and move_mount(2). The error names
/// the call that failed.
pub fn overlay_fsconfig(target: &str, options: &[String]) -> Result<(), String> {
    const FSCONFIG_SET_STRING: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
    let failed = |call: &str| format!("{call}: {}", std::io::Error::last_os_error());
    // SAFETY: raw syscalls with valid C strings; the fds are closed below
    // (on an early return the process ends right after).
    unsafe {
        let fs = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 0) as i32;
        if fs < 0 {
            return Err(failed("fsopen"));
        }
        for option in options {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let (key, value) = (CString::new(key).unwrap(), CString::new(value).unwrap());
            let rc = libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            );
            if rc != 0 {
                return Err(failed("fsconfig"));
            }
        }
        let no_name = std::ptr::null::<libc::c_char>();
        if libc::syscall(
            libc::SYS_fsconfig,
            fs,
            FSCONFIG_CMD_CREATE,
            no_name,
            no_name,
            0,
        ) != 0
        {
            return Err(failed("fsconfig create"));
        }
        let mnt = libc::syscall(libc::SYS_fsmount, fs, 0, 0) as i32;
        if mnt < 0 {
            return Err(failed("fsmount"));
        }
        let target = CString::new(target).unwrap();
        let rc = libc::syscall(
            libc::SYS_move_mount,
            mnt,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        if rc != 0 {
            return Err(failed("move_mount"));
        }
        libc::close(mnt);
        libc::close(fs);
    }
    Ok(())
}

/// `safeguard-vm-tests --overlay-mount`: mount(2) of an overlay.
fn overlay_action(options: &str, target: &str, cwd: &str) -> Action {
    Action::Run(
        "/bin/safeguard-vm-tests",
        vec![
            "--overlay-mount".into(),
            options.into(),
            target.into(),
            cwd.into(),
        ],
    )
}

/// An overlay mount refused for the layer `layer` under `rule`.
fn overlay(row: &'static str, layer: &str, rule: &str, action: Action) -> Op {
    Op {
        row,
        event: event::MOUNT_MOUNT,
        key: attr::MOUNT_SOURCE,
        value: layer.into(),
        attributes: vec![
            (attr::SECURITY_RULE_NAME, json!(rule)),
            (attr::MOUNT_FSTYPE, json!("overlay")),
        ],
        action,
    }
}

/// Overlays of the denied source: by lower and upper layer, relative to
/// the working directory, with an escape, above it, and through the new
/// mount API; one spelled with `..` cannot be told.
fn overlay_ops() -> Vec<Op> {
    let public = format!("{OTHER}/data");
    let secret = format!("{DENIED}/data");
    vec![
        overlay(
            "mount.overlay.lower",
            &secret,
            DENIED,
            overlay_action(
                &format!("lowerdir={public}:{secret}"),
                "/mnt/sgm/ovl-lower",
                "/",
            ),
        ),
        overlay(
            "mount.overlay.upper",
            &secret,
            DENIED,
            overlay_action(
                &format!("lowerdir={public},upperdir={secret},workdir=/srv/sgm/w1"),
                "/mnt/sgm/ovl-upper",
                "/",
            ),
        ),
        overlay(
            "mount.overlay.relative",
            &secret,
            DENIED,
            overlay_action(
                "lowerdir=public/data:secret/data",
                "/mnt/sgm/ovl-relative",
                "/srv/sgm",
            ),
        ),
        overlay(
            "mount.overlay.escaped",
            &secret,
            DENIED,
            overlay_action(
                &format!("lowerdir={public}:/srv/sgm/se\\cret/data"),
                "/mnt/sgm/ovl-escaped",
                "/",
            ),
        ),
        overlay(
            "mount.overlay.ancestor",
            "/srv/sgm/",
            DENIED,
            overlay_action(
                "lowerdir=/srv/sgm/:/srv/sgm-ovl/low",
                "/mnt/sgm/ovl-ancestor",
                "/",
            ),
        ),
        // In a chroot, an absolute layer is the chroot's.
        overlay(
            "mount.overlay.chroot",
            &secret,
            DENIED,
            Action::Run(
                "/bin/safeguard-vm-tests",
                vec![
                    "--overlay-mount".into(),
                    "lowerdir=/public/data:/secret/data".into(),
                    "/ovlc".into(),
                    "/".into(),
                    "/srv/sgm".into(),
                ],
            ),
        ),
        overlay(
            "mount.overlay.dotdot",
            "/srv/sgm/public/../secret/data",
            semconv::rule::PATH_UNRESOLVED,
            overlay_action(
                &format!("lowerdir={public}:/srv/sgm/public/../secret/data"),
                "/mnt/sgm/ovl-dotdot",
                "/",
            ),
        ),
        overlay(
            "mount.overlay.fsconfig",
            &secret,
            DENIED,
            Action::Run(
                "/bin/safeguard-vm-tests",
                vec![
                    "--overlay-fsconfig".into(),
                    "/mnt/sgm/ovl-fsconfig".into(),
                    format!("lowerdir={public}:{secret}"),
                ],
            ),
        ),
    ]
}

fn ops() -> Vec<Op> {
    vec![
        Op {
            row: "mount.bind",
            event: event::MOUNT_MOUNT,
            key: attr::MOUNT_SOURCE,
            value: format!("{DENIED}/data"),
            attributes: vec![
                (attr::MOUNT_TARGET, json!("/mnt/sgm/bind")),
                (attr::SECURITY_RULE_NAME, json!(DENIED)),
            ],
            action: Action::Run(
                "/bin/mount",
                vec![
                    "--bind".into(),
                    format!("{DENIED}/data"),
                    "/mnt/sgm/bind".into(),
                ],
            ),
        },
        Op {
            row: "mount.move_mount",
            event: event::MOUNT_MOVE,
            key: attr::MOUNT_SOURCE,
            value: format!("{DENIED}/tree"),
            attributes: vec![(attr::MOUNT_TARGET, json!("/mnt/sgm/moved"))],
            action: Action::Call(Box::new(|| {
                move_mount(&format!("{DENIED}/tree"), "/mnt/sgm/moved")
            })),
        },
        // mount(2) binds whose source is spelled so that no string rule
        // can tell it: refused (fail closed), or followed (a descriptor).
        raw_bind(
            "mount.bind.dot",
            "/srv/sgm/./secret/data",
            "/mnt/sgm/dot",
            "/",
            semconv::rule::PATH_UNRESOLVED,
            false,
        ),
        raw_bind(
            "mount.bind.relative",
            "secret/data",
            "/mnt/sgm/relative",
            "/srv/sgm",
            semconv::rule::PATH_UNRESOLVED,
            false,
        ),
        // A bind of a directory above the source would show it (with a
        // trailing slash, as mount(2) takes it), and so would one of /.
        raw_bind(
            "mount.bind.ancestor",
            "/srv/sgm/",
            "/mnt/sgm/above",
            "/",
            DENIED,
            false,
        ),
        raw_bind("mount.bind.root", "/", "/mnt/sgm/root", "/", DENIED, false),
        raw_bind(
            "mount.bind.fd",
            &format!("{DENIED}/data"),
            "/mnt/sgm/fd",
            "/",
            DENIED,
            true,
        ),
        // The new mount API's bind: a detached clone, judged by identity.
        Op {
            row: "mount.move.clone",
            event: event::MOUNT_MOVE,
            key: attr::MOUNT_TARGET,
            value: "/mnt/sgm/clone".into(),
            attributes: vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            action: Action::Call(Box::new(|| {
                clone_and_move(&format!("{DENIED}/data"), "/mnt/sgm/clone")
            })),
        },
        // A clone of the directory above the source would show it.
        Op {
            row: "mount.move.ancestor",
            event: event::MOUNT_MOVE,
            key: attr::MOUNT_TARGET,
            value: "/mnt/sgm/parent".into(),
            attributes: vec![(attr::SECURITY_RULE_NAME, json!(DENIED))],
            action: Action::Call(Box::new(|| clone_and_move("/srv/sgm", "/mnt/sgm/parent"))),
        },
    ]
    .into_iter()
    .chain(overlay_ops())
    .collect()
}

/// `safeguard-vm-tests --bind-mount`: mount(2) with MS_BIND, as given.
fn bind_action(source: &str, target: &str, cwd: &str, fd: bool) -> Action {
    let mut args = vec![
        "--bind-mount".into(),
        source.into(),
        target.into(),
        cwd.into(),
    ];
    if fd {
        args.push("--fd".into());
    }
    Action::Run("/bin/safeguard-vm-tests", args)
}

fn raw_bind(row: &'static str, source: &str, target: &str, cwd: &str, rule: &str, fd: bool) -> Op {
    Op {
        row,
        event: event::MOUNT_MOUNT,
        key: attr::MOUNT_TARGET,
        value: target.into(),
        attributes: vec![(attr::SECURITY_RULE_NAME, json!(rule))],
        action: bind_action(source, target, cwd, fd),
    }
}

fn untouched() -> Vec<Untouched> {
    vec![
        Untouched {
            what: "other-source",
            key: attr::MOUNT_SOURCE,
            value: format!("{OTHER}/data"),
            action: Action::Run(
                "/bin/mount",
                vec![
                    "--bind".into(),
                    format!("{OTHER}/data"),
                    "/mnt/sgm/other".into(),
                ],
            ),
        },
        // A bind of an allowed directory named by its descriptor.
        Untouched {
            what: "other-fd",
            key: attr::MOUNT_TARGET,
            value: "/mnt/sgm/otherfd".into(),
            action: bind_action(&format!("{OTHER}/data"), "/mnt/sgm/otherfd", "/", true),
        },
        // A read-only remount of a bind names no source.
        Untouched {
            what: "bind-remount",
            key: attr::MOUNT_TARGET,
            value: "/mnt/sgm/other".into(),
            action: Action::Run(
                "/bin/mount",
                vec![
                    "-o".into(),
                    "remount,bind,ro".into(),
                    "/mnt/sgm/other".into(),
                ],
            ),
        },
        // Overlays of allowed layers, by absolute and relative names.
        Untouched {
            what: "overlay-other",
            key: attr::MOUNT_TARGET,
            value: "/mnt/sgm/ovl-other".into(),
            action: overlay_action(
                &format!(
                    "lowerdir={OTHER}/data:{OTHER}/more,upperdir={OTHER}/upper,workdir={OTHER}/work"
                ),
                "/mnt/sgm/ovl-other",
                "/",
            ),
        },
        Untouched {
            what: "overlay-relative",
            key: attr::MOUNT_SOURCE,
            value: format!("{OTHER}/data"),
            action: overlay_action("lowerdir=data:more", "/mnt/sgm/ovl-otherrel", OTHER),
        },
        // A work directory above the source: the overlay writes there,
        // but shows nothing of it.
        Untouched {
            what: "overlay-workdir",
            key: attr::MOUNT_SOURCE,
            value: "/srv/sgm".into(),
            action: overlay_action(
                "lowerdir=/srv/sgm-ovl/low,upperdir=/srv/sgm-ovl/up,workdir=/srv/sgm",
                "/mnt/sgm/ovl-work",
                "/",
            ),
        },
        // A clone of a directory beside the source, below its parent.
        Untouched {
            what: "other-clone",
            key: attr::MOUNT_TARGET,
            value: "/mnt/sgm/otherclone".into(),
            action: Action::Call(Box::new(|| {
                clone_and_move(&format!("{OTHER}/data"), "/mnt/sgm/otherclone")
            })),
        },
    ]
}

fn config(mode: &str) -> String {
    format!(
        "mount:\n  enable: true\n  mode: {mode}\n  deny: [{DENIED}]\nfiles:\n  enable: false\nkernel:\n  tier: lsm\n"
    )
}

pub fn block(agent: &str) -> Vec<(String, TestResult)> {
    suite(
        agent,
        "block",
        &config("block"),
        Expect::Blocked,
        &setup,
        ops(),
        untouched(),
    )
}

pub fn monitor(agent: &str) -> Vec<(String, TestResult)> {
    suite(
        agent,
        "monitor",
        &config("monitor"),
        Expect::WouldBlock,
        &setup,
        ops(),
        untouched(),
    )
}
