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

fn path(dir: &str, name: &str) -> String {
    format!("{dir}/{name}")
}

fn setup() -> Result<(), String> {
    let _ = fs::remove_dir_all("/srv/sgf");
    for dir in [DENIED, OTHER, LOOKALIKE, &path(DENIED, "dir")] {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    for name in [
        "read", "unlink", "rename", "truncate", "chmod", "chown", "mmap", "ioctl",
    ] {
        let p = path(DENIED, name);
        fs::write(&p, "data\n").map_err(|e| format!("write {p}: {e}"))?;
    }
    fs::write(path(OTHER, "incoming"), "data\n").map_err(|e| e.to_string())?;
    fs::write(path(LOOKALIKE, "x"), "data\n").map_err(|e| e.to_string())?;
    fs::write(path(DENIED, "prog"), "#!/bin/sh\nexit 0\n").map_err(|e| e.to_string())?;
    fs::set_permissions(path(DENIED, "prog"), fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    // Descriptors opened before the agent starts: mmap and ioctl are judged
    // on files that are already open.
    let mut held = held_files().lock().unwrap();
    held.clear();
    for name in ["mmap", "ioctl"] {
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
        file_op(
            "files.open.create",
            event::FILE_OPEN,
            path(DENIED, "created"),
            vec![(attr::FILE_OPEN_MODE, json!(["write", "create", "truncate"]))],
            sh(&format!("echo x > {}", path(DENIED, "created"))),
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
            vec![(attr::FILE_MODE, json!("0600"))],
            run("/bin/chmod", &["600", &path(DENIED, "chmod")]),
        ),
        file_op(
            "files.chown",
            event::FILE_CHOWN,
            path(DENIED, "chown"),
            vec![
                (attr::FILE_OWNER_ID, json!("1000")),
                (attr::FILE_GROUP_ID, json!("1000")),
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
            vec![(attr::FILE_IOCTL_CMD, json!(libc::FIONREAD))],
            Action::Call(Box::new(|| {
                let mut n: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int.
                match unsafe { libc::ioctl(held_fd(1), libc::FIONREAD, &mut n) } {
                    0 => Ok(()),
                    _ => Err(errno()),
                }
            })),
        ),
    ]
}

fn untouched() -> Vec<Untouched> {
    vec![Untouched {
        what: "lookalike-prefix",
        key: attr::FILE_PATH,
        value: path(LOOKALIKE, "x"),
        action: run("/bin/rm", &[&path(LOOKALIKE, "x")]),
    }]
}

fn config(mode: &str, tier: &str) -> String {
    format!(
        "files:\n  enable: true\n  mode: {mode}\n  ioctl: true\n  deny: [{DENIED}]\n  allow: [{OTHER}]\n\
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
        untouched(),
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
        untouched(),
    )
}
