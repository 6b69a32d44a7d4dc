//! The commands' side of the status socket: `safeguard status` asks for
//! the snapshot, `safeguard stop` asks the agent to stop and waits until
//! it has exited.

use std::{
    io::{Read as _, Write as _},
    net::Shutdown,
    os::{fd::AsRawFd as _, unix::net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{Reply, Request, Snapshot};

/// How long the agent has to answer a request.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// How often `stop` looks whether the agent has exited.
const POLL: Duration = Duration::from_millis(50);

/// Asks the agent listening on `path` for its snapshot.
pub fn query(path: &Path) -> anyhow::Result<Snapshot> {
    let (body, _) = ask(path, Request::Status, ANSWER_WAIT)?;
    serde_json::from_slice(&body)
        .with_context(|| format!("the answer from {} is not a status", path.display()))
}

/// Asks the agent listening on `path` to stop, and waits until it has
/// exited, for `timeout` at most. Its pid, as this process sees it.
pub fn stop(path: &Path, timeout: Duration) -> anyhow::Result<u32> {
    let deadline = Instant::now() + timeout;
    let (body, seen_pid) = ask(path, Request::Stop, timeout.min(ANSWER_WAIT))?;
    let reply: Reply = serde_json::from_slice(&body)
        .with_context(|| format!("the answer from {} is not a reply to stop", path.display()))?;
    let pid = seen_pid.unwrap_or(reply.pid);
    match reply {
        Reply {
            stopping: Some(true),
            ..
        } => {}
        Reply {
            error: Some(why), ..
        } => bail!("the agent (pid {pid}) is not stopping: {why}"),
        // A snapshot: an agent from before requests, which answers
        // everything with its status.
        Reply { stopping: None, .. } => bail!(
            "the agent (pid {pid}) does not know the stop request (an older version); stop it with SIGTERM (systemctl stop safeguard)"
        ),
        Reply { .. } => bail!("the agent (pid {pid}) is not stopping"),
    }
    let agent = match seen_pid {
        // Where /proc shows this process, it shows the agent while it runs.
        Some(pid) if Process::running(std::process::id()).is_some() => {
            match Process::running(pid) {
                Some(process) => Stopping::Process(process),
                None => return Ok(pid),
            }
        }
        _ => Stopping::Socket(path),
    };
    while !agent.exited() {
        if Instant::now() >= deadline {
            bail!(
                "the agent (pid {pid}) is stopping but has not exited after {}; it may still be draining events or delivering its spool (see its log)",
                humantime::format_duration(timeout)
            );
        }
        std::thread::sleep(POLL);
    }
    Ok(pid)
}

/// What tells that a stopping agent has exited.
enum Stopping<'a> {
    /// Its process, when the kernel gave its pid for the socket's owner:
    /// the agent's pid in this process's pid namespace.
    Process(Process),
    /// Its socket, when the agent's pid namespace is hidden from this one
    /// (or /proc is not there): it goes at the end of the agent's
    /// shutdown.
    Socket(&'a Path),
}

impl Stopping<'_> {
    fn exited(&self) -> bool {
        match self {
            Self::Process(process) => process.exited(),
            Self::Socket(path) => UnixStream::connect(path).is_err(),
        }
    }
}

/// Sends `request` to the agent listening on `path` and reads its answer,
/// waiting `wait` at most for it. Also the pid of the socket's owner, as
/// the kernel gives it to this process.
fn ask(path: &Path, request: Request, wait: Duration) -> anyhow::Result<(Vec<u8>, Option<u32>)> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach the agent at {} (is it running? {} needs root)",
            path.display(),
            request.name()
        )
    })?;
    let pid = peer_pid(&stream);
    let wait = wait.max(Duration::from_millis(1));
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    // An agent from before requests answers without reading: a write it
    // refuses does not matter, its answer is read all the same.
    let _ = stream
        .write_all(format!("{}\n", request.name()).as_bytes())
        .and_then(|()| stream.shutdown(Shutdown::Write));
    let mut body = Vec::new();
    stream
        .read_to_end(&mut body)
        .with_context(|| format!("reading from {}", path.display()))?;
    Ok((body, pid))
}

/// The pid of the process at the other end of `stream` (SO_PEERCRED), in
/// this process's pid namespace; `None` when that namespace cannot see it.
fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes a `ucred`, at most `len` bytes, into
    // `cred`, which lives through the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// A process, told apart from a later one given the same pid by its start
/// time.
#[derive(Debug, PartialEq, Eq)]
struct Process {
    pid: u32,
    /// Clock ticks after boot.
    started: u64,
}

impl Process {
    /// `pid`, unless it has exited (a zombie has: only its parent has not
    /// collected its exit status yet).
    fn running(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, started) = parse_stat(&stat)?;
        (!matches!(state, 'Z' | 'X' | 'x')).then_some(Self { pid, started })
    }

    fn exited(&self) -> bool {
        Self::running(self.pid).is_none_or(|now| now.started != self.started)
    }
}

/// The state and start time of a process, from its /proc/PID/stat.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name, in parentheses, may hold spaces and parentheses:
    // fields are counted after its last `)`. The state is the 3rd field,
    // the start time the 22nd.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(18)?.parse().ok()?;
    Some((state, started))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// `stop` against an agent on a socket that reads one request and
    /// answers `answer`.
    fn stop_against(answer: &'static str, timeout: Duration) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let agent = std::thread::spawn(move || {
            let (mut client, _) = listener.accept().unwrap();
            let mut request = String::new();
            client.read_to_string(&mut request).unwrap();
            client.write_all(answer.as_bytes()).unwrap();
            request
        });
        let result = stop(&path, timeout);
        assert_eq!(agent.join().unwrap(), "stop\n");
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn stop_says_why_the_agent_is_not_stopping() {
        let refused = stop_against(
            r#"{"stopping":false,"pid":7,"error":"stop refused: only root (uid 0) may stop the agent; pid 9 uid 1000 asked"}"#,
            Duration::from_secs(5),
        );
        assert!(
            refused.ends_with("is not stopping: stop refused: only root (uid 0) may stop the agent; pid 9 uid 1000 asked"),
            "{refused}"
        );
        let older = stop_against(r#"{"version":"0.0.1","pid":7}"#, Duration::from_secs(5));
        assert!(older.contains("does not know the stop request"), "{older}");
        // The "agent" is this test, which does not exit.
        let started = Instant::now();
        let late = stop_against(r#"{"stopping":true,"pid":7}"#, Duration::from_millis(300));
        assert!(
            late.contains(&format!(
                "the agent (pid {}) is stopping but has not exited after 300ms",
                std::process::id()
            )),
            "{late}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_process_is_known_by_its_start_time_and_a_zombie_has_exited() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 98765)));
        let zombie = stat.replace(") S 1", ") Z 1");
        assert_eq!(parse_stat(&zombie), Some(('Z', 98765)));
        assert_eq!(parse_stat("4242 (cut"), None);

        let me = Process::running(std::process::id()).unwrap();
        assert!(!me.exited());
        let reused = Process {
            started: me.started + 1,
            ..me
        };
        assert!(reused.exited(), "a new process with the pid is not ours");

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not collected yet: a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Process::running(pid).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(Process::running(pid), None);
        child.wait().unwrap();
    }
}
