//! Drives the real `safeguard` binary the way an operator or systemd does:
//! start it with a configuration file, wait for its readiness notification
//! (`NOTIFY_SOCKET`, as with `Type=notify`), stop it with SIGTERM or
//! `safeguard stop`, and read the events it wrote. Used by the host
//! integration tests and inside the test VMs.

use std::{
    fs,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod collector;
pub mod dns;

/// The workspace's root, found from the package directory cargo gives the
/// running test or bench (`CARGO_MANIFEST_DIR` in its environment), not the
/// one compiled in: a build cache shared between checkouts would otherwise
/// point a test at another checkout's files.
pub fn workspace_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(&package)
        .to_path_buf()
}

/// openEuler safeguard's own example configuration (its
/// config/safeguard.yml), as users have it: it must load and enforce
/// unchanged.
pub const SAFEGUARD_EXAMPLE_CONFIG: &str = r#"network:
  enable: false
  mode: block
  target: host
  cidr:
    allow:
      - 0.0.0.0/0
  domain:
    deny:
      #- example.com
  command:
    allow:
      #- curl
files:
  enable: true
  mode: block
  target: host
  deny:
    - '/etc/test'
    - '/home/vagrant/test'
mount:
  enable: true
  mode: block
  target: host
  deny:
    - '/dev/vdxn'
process:
  enable: false
  mode: monitor
  target: host
log:
  level: info
  format: json
"#;

/// How to start the agent beyond its configuration.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Pass `--output <dir>/events.jsonl` (every event there). Without it
    /// the configuration's `log` section decides.
    pub output_flag: bool,
    /// Empty the working directory first (not when restarting on a spool).
    pub fresh: bool,
    pub env: Vec<(String, String)>,
    /// Hand the configuration over exactly as given (no test additions:
    /// export stays on, the status socket is the default one).
    pub verbatim: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            output_flag: true,
            fresh: true,
            env: Vec::new(),
            verbatim: false,
        }
    }
}

pub struct Agent {
    child: Child,
    /// The agent's binary, for `safeguard stop`.
    binary: String,
    dir: PathBuf,
    /// Where the agent's sd_notify messages arrive.
    notify: UnixDatagram,
}

impl Agent {
    /// Starts `binary run` with `config` (YAML), working in `dir` (created,
    /// emptied first), and waits up to `ready_within` for READY=1.
    pub fn start(
        binary: &str,
        dir: &Path,
        config: &str,
        ready_within: Duration,
    ) -> Result<Self, String> {
        Self::launch(binary, dir, config, ready_within, &Launch::default())
    }

    /// [`Agent::start`] with more say in how.
    pub fn launch(
        binary: &str,
        dir: &Path,
        config: &str,
        ready_within: Duration,
        launch: &Launch,
    ) -> Result<Self, String> {
        if launch.fresh {
            let _ = fs::remove_dir_all(dir);
        }
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let config_path = dir.join("safeguard.yaml");
        // Tests that do not speak of OpenTelemetry read the event log only:
        // no export, no spool.
        let config = if launch.verbatim {
            config.to_string()
        } else {
            complete_config(config, dir)
        };
        fs::write(&config_path, config).map_err(|e| format!("write config: {e}"))?;

        let socket_path = dir.join("notify.sock");
        let _ = fs::remove_file(&socket_path);
        let socket =
            UnixDatagram::bind(&socket_path).map_err(|e| format!("bind notify socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;

        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        command.args(["run", "--config"]).arg(&config_path);
        if launch.output_flag {
            command.arg("--output").arg(dir.join("events.jsonl"));
        }
        let child = command
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .env("NOTIFY_SOCKET", &socket_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {binary}: {e}"))?;
        let mut agent = Agent {
            child,
            binary: binary.to_string(),
            dir: dir.to_path_buf(),
            notify: socket,
        };
        agent.wait_ready(ready_within)?;
        Ok(agent)
    }

    /// Replaces the agent's configuration with `config` and asks it to
    /// reload (SIGHUP); returns once it says it is ready again.
    pub fn reload(&mut self, config: &str, within: Duration) -> Result<(), String> {
        let path = self.config_path();
        let tmp = path.with_extension("new");
        fs::write(&tmp, complete_config(config, &self.dir)).map_err(|e| e.to_string())?;
        fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        self.signal(libc::SIGHUP);
        self.wait_ready(within)
    }

    /// Waits for the agent's next READY=1: after start, and after each
    /// configuration reload (systemd's notify-reload protocol).
    pub fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut buf = [0u8; 256];
        let agent = self;
        loop {
            if let Ok(n) = agent.notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(());
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(format!(
                    "agent exited before ready ({status}): {}",
                    agent.log()
                ));
            }
            if start.elapsed() > within {
                return Err(format!("agent not ready after {within:?}: {}", agent.log()));
            }
        }
    }

    /// The configuration file the agent was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("safeguard.yaml")
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the agent (SIGSTOP / SIGCONT to freeze its reader).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Kills the agent with SIGKILL, as a crash or the OOM killer would;
    /// returns its log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    /// What the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Stops the agent with SIGTERM, as an operator would; it must exit 0.
    /// Returns the events it wrote and its log.
    pub fn stop(self) -> Result<(Vec<Value>, String), String> {
        self.stop_within(Duration::from_secs(30))
    }

    /// [`Agent::stop`], allowing `within` for the agent to drain and exit
    /// (a slow emulated machine with a backlog of events).
    pub fn stop_within(self, within: Duration) -> Result<(Vec<Value>, String), String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.exit_within(within)
    }

    /// Stops the agent without a signal, as an operator must when it
    /// refuses them (kernel.protect): `binary stop --config <its
    /// configuration>`, which must succeed, after which the agent must
    /// have exited 0. Returns the events it wrote and its log.
    pub fn stop_by_request(self, binary: &str) -> Result<(Vec<Value>, String), String> {
        let within = Duration::from_secs(30);
        let out = Command::new(binary)
            .arg("stop")
            .arg("--config")
            .arg(self.config_path())
            .arg("--timeout")
            .arg(format!("{}s", within.as_secs()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn {binary} stop: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{binary} stop failed ({}): {}\nagent log: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ));
        }
        // `stop` has seen the agent exit: collecting its status is quick.
        self.exit_within(Duration::from_secs(5))
    }

    /// Waits up to `within` for the agent to exit, which must be with 0;
    /// returns the events it wrote and its log.
    fn exit_within(mut self, within: Duration) -> Result<(Vec<Value>, String), String> {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if start.elapsed() > within {
                return Err(format!(
                    "agent did not stop within {within:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        if !status.success() {
            return Err(format!("agent exited with {status}: {log}"));
        }
        Ok((read_events(&self.dir.join("events.jsonl"))?, log))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // An agent with `kernel.protect` refuses SIGKILL from us: ask it.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new(&self.binary)
            .args(["stop", "--timeout", "60s", "--config"])
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The configuration as the agent gets it: tests that do not speak of
/// OpenTelemetry read the event log only (no export, no spool), tests that
/// do not speak of `kernel.protect` have it off, and each
/// agent has its own status socket, so that agents of parallel tests do not
/// meet.
fn complete_config(config: &str, dir: &Path) -> String {
    let mut config = config.to_string();
    // The guard (`kernel.protect`, on in block mode) would refuse the
    // signals tests stop and pause the agent with: off unless asked for.
    if !config.contains("protect:") {
        match config.find("\nkernel:\n") {
            Some(at) => config.insert_str(at + "\nkernel:\n".len(), "  protect: false\n"),
            None if config.starts_with("kernel:\n") => {
                config.insert_str("kernel:\n".len(), "  protect: false\n")
            }
            None => config.push_str("\nkernel:\n  protect: false\n"),
        }
    }
    if !config.lines().any(|l| l.starts_with("otel:")) {
        config.push_str("\notel:\n  enable: false\n");
    }
    if !config.lines().any(|l| l.starts_with("status:")) {
        config.push_str(&format!(
            "\nstatus:\n  socket: {}\n",
            dir.join("status.sock").display()
        ));
    }
    config
}

/// Parses a JSON-lines event file; a line that is not JSON is an error.
/// A last line without its newline is one the agent is still writing
/// (a test may read while it runs): it is left for the next read.
pub fn read_events(path: &Path) -> Result<Vec<Value>, String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l.trim_end())
                .map_err(|e| format!("event line {l:?} is not JSON: {e}"))
        })
        .collect()
}

/// The event name of a parsed event line: under `otel.event.name`, or
/// under `event_name` in lines an earlier version wrote.
pub fn event_name(event: &Value) -> Option<&str> {
    event
        .get(semconv::event::NAME_KEY)
        .or_else(|| event.get(semconv::event::LEGACY_NAME_KEY))
        .and_then(Value::as_str)
}

/// Events about `path`.
pub fn events_for<'a>(events: &'a [Value], path: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e[semconv::attr::FILE_PATH] == path)
        .collect()
}

/// Result of running a program: its pid, exit code and stderr.
pub struct Ran {
    pub pid: u32,
    pub code: i32,
    pub stderr: String,
}

/// Runs a program to completion, optionally as another user, with stdout
/// discarded.
pub fn run(
    program: &str,
    args: &[&str],
    uid: Option<u32>,
    cwd: Option<&Path>,
) -> Result<Ran, String> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn().map_err(|e| format!("spawn {program}: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(Ran {
        pid,
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The value of `key=N` in the agent's final "stopped" log line.
pub fn stopped_counter(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(" stopped "))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Calls `probe` until it gives a value, every `every`, for up to `within`;
/// `None` if it never did.
pub fn wait_for<T>(
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A cgroup v2 directory made for one test and removed after it.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new() -> Option<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let root = mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })?;
        // Unique per test, also when tests of one binary run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("safeguard-test-{}-{n}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        Some(Self(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.0);
    }
}

/// Removes a cgroup and the cgroups below it, innermost first (a cgroup
/// is removed with rmdir(2), and only once it has no children).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Like [`run`], as root, in cgroup `cgroup` (moved there before exec).
pub fn run_in_cgroup(cgroup: &Path, program: &str, args: &[&str]) -> Result<Ran, String> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let procs = cgroup.join("cgroup.procs");
    // SAFETY: between fork and exec, only a write(2) of our pid into the
    // cgroup.
    unsafe {
        cmd.pre_exec(move || fs::write(&procs, std::process::id().to_string()));
    }
    let child = cmd.spawn().map_err(|e| format!("spawn {program}: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(Ran {
        pid,
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// connect(2) to `addr` from a new process, inside `cgroup` if given:
/// `(pid, errno or 0)`.
pub fn connect_from(cgroup: Option<&Path>, addr: std::net::SocketAddr) -> (u32, i32) {
    use std::os::unix::process::CommandExt as _;
    let script = format!(
        "import socket, sys\ntry:\n    socket.create_connection(('{}', {}), timeout=5)\nexcept OSError as e:\n    sys.exit(e.errno or 99)\n",
        addr.ip(),
        addr.port()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    if let Some(dir) = cgroup {
        let procs = dir.join("cgroup.procs");
        // SAFETY: only async-signal-safe work between fork and exec: a
        // write(2) of our pid into the cgroup.
        unsafe {
            cmd.pre_exec(move || fs::write(&procs, std::process::id().to_string()));
        }
    }
    let child = cmd.spawn().expect("spawn python3");
    let pid = child.id();
    let status = child.wait_with_output().expect("wait for python3").status;
    (pid, status.code().unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{event_name, read_events};

    #[test]
    fn a_line_still_being_written_waits_and_a_bad_whole_line_is_an_error() {
        let log = std::env::temp_dir().join(format!("sg-read-events-{}.jsonl", std::process::id()));
        std::fs::write(&log, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let events = read_events(&log).unwrap();
        assert_eq!(events, vec![json!({"a": 1}), json!({"a": 2})]);
        std::fs::write(&log, "{\"a\":1}\nnot json\n").unwrap();
        let err = read_events(&log).unwrap_err();
        assert!(err.contains("not json"), "{err}");
        std::fs::remove_file(&log).unwrap();
    }

    #[test]
    fn the_event_name_is_read_under_either_key_the_new_one_first() {
        let new = json!({"otel.event.name": "safeguard.file.open"});
        let old = json!({"event_name": "safeguard.file.open"});
        let both = json!({"otel.event.name": "safeguard.file.open", "event_name": "x"});
        assert_eq!(event_name(&new), Some("safeguard.file.open"));
        assert_eq!(event_name(&old), Some("safeguard.file.open"));
        assert_eq!(event_name(&both), Some("safeguard.file.open"));
        assert_eq!(event_name(&json!({})), None);
    }
}
