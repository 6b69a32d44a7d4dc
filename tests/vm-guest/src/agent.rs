//! Starting and stopping the real agent, and reading what it reported.

use std::{
    fs,
    io::Read as _,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub type TestResult = Result<(), String>;

/// How long the agent may take to load and attach under software emulation.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Agent {
    child: Child,
    dir: PathBuf,
}

impl Agent {
    /// Starts `safeguard run` with `config` (YAML) and waits until it
    /// reports ready over the systemd notification protocol.
    pub fn start(binary: &str, name: &str, config: &str) -> Result<Self, String> {
        let dir = PathBuf::from(format!("/tmp/sgtest-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let config_path = dir.join("safeguard.yaml");
        fs::write(&config_path, config).map_err(|e| format!("write config: {e}"))?;

        let socket_path = dir.join("notify.sock");
        let socket =
            UnixDatagram::bind(&socket_path).map_err(|e| format!("bind notify socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;

        let stderr = fs::File::create(dir.join("agent.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&config_path)
            .arg("--output")
            .arg(dir.join("events.jsonl"))
            .env("NOTIFY_SOCKET", &socket_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {binary}: {e}"))?;
        let mut agent = Agent { child, dir };

        let start = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            if let Ok(n) = socket.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(agent);
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(format!(
                    "agent exited before ready ({status}): {}",
                    agent.log()
                ));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "agent not ready after {READY_TIMEOUT:?}: {}",
                    agent.log()
                ));
            }
        }
    }

    /// Stops the agent with SIGTERM, as an operator would, and returns the
    /// events it wrote.
    pub fn stop(mut self) -> Result<Vec<Value>, String> {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                return Err(format!("agent did not stop within 30 s: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(format!("agent exited with {status}: {}", self.log()));
        }
        read_events(&self.dir.join("events.jsonl"))
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.join("agent.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_events(path: &Path) -> Result<Vec<Value>, String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("event line {l:?} is not JSON: {e}")))
        .collect()
}

/// Spawns a program and returns its pid along with its result.
pub fn run(program: &str, args: &[&str], uid: Option<u32>) -> Result<(u32, i32, String), String> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let child = cmd.spawn().map_err(|e| format!("spawn {program}: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok((
        pid,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// open(2) from this process; `Err(errno)` on failure.
pub fn open_read(path: &str) -> Result<(), i32> {
    match fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(what()) }
}

/// Events about `path`.
pub fn events_for<'a>(events: &'a [Value], path: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e[semconv::attr::FILE_PATH] == path)
        .collect()
}
