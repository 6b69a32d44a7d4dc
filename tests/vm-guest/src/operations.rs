//! Operations: openEuler safeguard's own example configuration
//! (config/safeguard.yml), handed to the agent unchanged, enforces what it
//! says; container identity from a container-shaped cgroup.

use std::{ffi::CString, fs, path::Path};

use safeguard_test_support::{Agent, Launch, SAFEGUARD_EXAMPLE_CONFIG, events_for};
use semconv::attr;

use crate::cases::{READY_WITHIN, TestResult, ensure, open_read};

const EPERM: i32 = 1;

/// mount(2) of a tmpfs named `source` on `target`: `Err(errno)` on failure.
fn mount(source: &str, target: &str) -> Result<(), i32> {
    let (source, target, fstype) = (
        CString::new(source).unwrap(),
        CString::new(target).unwrap(),
        CString::new("tmpfs").unwrap(),
    );
    // SAFETY: mount(2) with valid C strings and no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

pub fn safeguard_example_config_enforces_what_it_says(agent_bin: &str) -> TestResult {
    for (path, data) in [("/etc/test", "x\n"), ("/home/vagrant/test/notes", "x\n")] {
        fs::create_dir_all(Path::new(path).parent().unwrap()).map_err(|e| e.to_string())?;
        fs::write(path, data).map_err(|e| format!("write {path}: {e}"))?;
    }
    fs::create_dir_all("/mnt/sgx").map_err(|e| e.to_string())?;
    // A tmpfs whose source is named /dev/vdxn: without the agent it mounts
    // (tmpfs ignores its source), so a refusal below is the agent's.
    ensure(mount("/dev/vdxn", "/mnt/sgx").is_ok(), || {
        "a tmpfs named /dev/vdxn should mount before the agent runs".into()
    })?;
    let target = CString::new("/mnt/sgx").unwrap();
    // SAFETY: umount(2) with a valid C string.
    unsafe { libc::umount(target.as_ptr()) };

    let launch = Launch {
        verbatim: true,
        ..Launch::default()
    };
    let agent = Agent::launch(
        agent_bin,
        Path::new("/tmp/sgtest-example"),
        SAFEGUARD_EXAMPLE_CONFIG,
        READY_WITHIN,
        &launch,
    )?;
    let etc = open_read("/etc/test");
    let home = open_read("/home/vagrant/test/notes");
    let other = open_read("/etc/hostname").or_else(|_| open_read("/etc/passwd"));
    let mounted = mount("/dev/vdxn", "/mnt/sgx");
    // Block mode: `kernel.protect` is on, and SIGTERM from us is refused.
    let refused = unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
    let (events, log) = agent.stop_by_request(agent_bin)?;
    ensure(refused == -1 && log.contains("kernel.protect: on"), || {
        format!("SIGTERM to the protected agent: {refused}: {log}")
    })?;

    ensure(etc == Err(EPERM), || format!("/etc/test: {etc:?}: {log}"))?;
    ensure(home == Err(EPERM), || {
        format!("/home/vagrant/test/notes: {home:?}")
    })?;
    ensure(other.is_ok(), || format!("an undenied file: {other:?}"))?;
    ensure(mounted == Err(EPERM), || {
        format!("mount /dev/vdxn: {mounted:?}")
    })?;
    for path in ["/etc/test", "/home/vagrant/test/notes"] {
        let e = events_for(&events, path);
        ensure(e.len() == 1 && e[0][attr::DECISION] == "blocked", || {
            format!("events for {path}: {e:?}")
        })?;
    }
    let mounts: Vec<_> = events
        .iter()
        .filter(|e| e[attr::MOUNT_SOURCE] == "/dev/vdxn")
        .collect();
    ensure(
        mounts.len() == 1
            && mounts[0][attr::DECISION] == "blocked"
            && mounts[0][attr::SECURITY_RULE_NAME] == "/dev/vdxn",
        || format!("mount events: {mounts:?}"),
    )
}

/// A process in a cgroup shaped like a Kubernetes container's (containerd,
/// systemd driver) is reported with its container id and pod UID.
pub fn container_shaped_cgroup_gives_identity(agent: &str) -> TestResult {
    use std::os::unix::process::CommandExt as _;
    const ID: &str = "6d2f0e8c1b7a45f3a9e0d4c2b1f8e7a6d5c4b3a2918f7e6d5c4b3a2910fedcba";
    const UID: &str = "5b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
    let cgroup = safeguard_test_support::TestCgroup::new()
        .ok_or_else(|| "no writable cgroup v2 hierarchy in the VM".to_string())?;
    let pod = cgroup.0.join(format!(
        "kubepods-besteffort-pod{}.slice",
        UID.replace('-', "_")
    ));
    let container = pod.join(format!("cri-containerd-{ID}.scope"));
    fs::create_dir_all(&container).map_err(|e| format!("mkdir {}: {e}", container.display()))?;
    crate::cases::setup_files()?;
    let config = format!(
        "files:\n  enable: true\n  mode: block\n  deny: [{}]\nkernel:\n  tier: lsm\n",
        Path::new(crate::cases::SECRET).parent().unwrap().display()
    );
    let agent = crate::cases::start(agent, "container-identity", &config)?;
    let procs = container.join("cgroup.procs");
    let mut cmd = std::process::Command::new("/bin/cat");
    cmd.arg(crate::cases::SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only a write(2) of our pid between fork and exec.
    unsafe {
        cmd.pre_exec(move || fs::write(&procs, std::process::id().to_string()));
    }
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let status = child.wait_with_output().map_err(|e| e.to_string())?.status;
    let (events, log) = agent.stop()?;
    let _ = fs::remove_dir(&container);
    let _ = fs::remove_dir(&pod);
    ensure(!status.success(), || {
        "the open should have been refused".into()
    })?;
    let mine: Vec<_> = events_for(&events, crate::cases::SECRET)
        .into_iter()
        .filter(|e| e[attr::PROCESS_PID] == pid)
        .collect();
    ensure(mine.len() == 1, || format!("events: {events:?}\n{log}"))?;
    let e = mine[0];
    ensure(
        e[attr::CONTAINER_ID] == ID
            && e[attr::CONTAINER_RUNTIME_NAME] == "containerd"
            && e[attr::K8S_POD_UID] == UID,
        || format!("identity: {e}"),
    )
}
