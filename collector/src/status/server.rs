//! The agent's side of the status socket. A client writes one request
//! line, `status` or `stop`, and shuts its writing half; the agent answers
//! with one JSON document and closes the connection. A client that writes
//! nothing (as `safeguard status` did before requests existed) is asked
//! for the status. Each connection is answered in its own task, and a
//! client gets [`REQUEST_WAIT`] to say what it wants: a slow or silent one
//! holds up no one.

use std::{
    fmt,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
    sync::watch,
};

use super::Source;
use crate::internal_events::StopRefused;

/// The longest request read; a longer one is refused.
pub const REQUEST_LIMIT: usize = 64;

/// How long a client has to write its request. One that has written
/// nothing by then asks for the status.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);

/// How long a client has to take its answer.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// What a client asks, in one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The agent's [`Snapshot`](super::Snapshot); also what an empty
    /// request asks.
    Status,
    /// Stop, as on SIGTERM. Only root's requests are followed.
    Stop,
}

impl Request {
    /// The request's name, as a client writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Stop => "stop",
        }
    }

    /// What `line` (without its newline) asks. Surrounding whitespace is
    /// ignored; an empty line asks for the status.
    pub fn parse(line: &[u8]) -> Result<Self, RequestError> {
        match String::from_utf8_lossy(line).trim() {
            "" | "status" => Ok(Self::Status),
            "stop" => Ok(Self::Stop),
            other => Err(RequestError::Unknown(other.to_string())),
        }
    }
}

/// Why a request was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown request {0:?}: the status socket answers \"status\" and \"stop\"")]
    Unknown(String),
    #[error("request longer than {REQUEST_LIMIT} bytes")]
    TooLong,
    #[error(
        "incomplete request {0:?}: neither a newline nor the end of the input within {wait:?}",
        wait = REQUEST_WAIT
    )]
    Incomplete(String),
    #[error("cannot read the request: {0}")]
    Unreadable(std::io::ErrorKind),
}

/// Who is at the other end of a connection, as the kernel says
/// (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `None` when the peer's pid namespace hides it.
    pub pid: Option<i32>,
    pub uid: u32,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid} uid {}", self.uid),
            None => write!(f, "an unknown pid with uid {}", self.uid),
        }
    }
}

/// The answer to every request but `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// To `stop`: whether the agent is stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping: Option<bool>,
    /// The agent's pid, as it sees itself.
    pub pid: u32,
    /// Why the request was refused or not understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the agent does with one request.
#[derive(Debug)]
pub(super) struct Answer {
    /// What the client is sent.
    pub body: Vec<u8>,
    /// Who asked the agent to stop, if the request was to stop and it is
    /// followed.
    pub stop: Option<Peer>,
}

/// Answers `request` from `peer` (`None`: its credentials could not be
/// read, so it is not trusted with `stop`).
pub(super) fn answer(
    request: Result<Request, RequestError>,
    peer: Option<Peer>,
    source: &Source,
) -> Answer {
    let reply = |stopping, error| {
        serde_json::to_vec(&Reply {
            stopping,
            pid: std::process::id(),
            error,
        })
        .unwrap_or_default()
    };
    match (request, peer) {
        (Ok(Request::Status), _) => Answer {
            body: serde_json::to_vec(&source.snapshot()).unwrap_or_default(),
            stop: None,
        },
        (Ok(Request::Stop), Some(peer)) if peer.uid == 0 => Answer {
            body: reply(Some(true), None),
            stop: Some(peer),
        },
        (Ok(Request::Stop), peer) => {
            let why = refusal(peer);
            source.registry.emit(StopRefused { why: &why });
            Answer {
                body: reply(Some(false), Some(why)),
                stop: None,
            }
        }
        (Err(e), _) => Answer {
            body: reply(None, Some(e.to_string())),
            stop: None,
        },
    }
}

/// Why a stop request from `peer` is not followed, as the client is told
/// and the agent says.
pub fn refusal(peer: Option<Peer>) -> String {
    match peer {
        Some(peer) => format!("stop refused: only root (uid 0) may stop the agent; {peer} asked"),
        None => "stop refused: the credentials of the process that asked cannot be read".into(),
    }
}

/// Reads one request: up to a newline, the end of the input or
/// [`REQUEST_LIMIT`] bytes, for at most `wait`. A client that has written
/// nothing within `wait` asks for the status.
pub(super) async fn read_request<R: AsyncRead + Unpin>(
    client: R,
    wait: Duration,
) -> Result<Request, RequestError> {
    let mut line = Vec::with_capacity(REQUEST_LIMIT + 1);
    let mut client = BufReader::new(client.take(REQUEST_LIMIT as u64 + 1));
    let read = tokio::time::timeout(wait, client.read_until(b'\n', &mut line)).await;
    match read {
        Err(_) if line.is_empty() => Ok(Request::Status),
        Err(_) => Err(RequestError::Incomplete(
            String::from_utf8_lossy(&line).into_owned(),
        )),
        Ok(Err(e)) => Err(RequestError::Unreadable(e.kind())),
        Ok(Ok(_)) => match line.strip_suffix(b"\n") {
            Some(request) => Request::parse(request),
            None if line.len() > REQUEST_LIMIT => Err(RequestError::TooLong),
            // The end of the input.
            None => Request::parse(&line),
        },
    }
}

/// The listening socket; removed when dropped.
pub struct Server {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

impl Server {
    /// Binds `path` (mode 0600). A socket left by an agent that died is
    /// replaced; one that answers means another agent runs: an error.
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("status socket: cannot create {}", dir.display()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another safeguard agent is running: its status socket {} answers",
                    path.display()
                );
            }
            std::fs::remove_file(path).with_context(|| {
                format!("status socket: cannot remove the stale {}", path.display())
            })?;
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("status socket: cannot listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("status socket: cannot restrict {}", path.display()))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Answers every connection, each in its own task, until dropped. A
    /// stop request that is followed is handed to the run loop through
    /// `stop`, once its answer is written.
    pub async fn serve(self, source: Arc<Source>, stop: watch::Sender<Option<Peer>>) {
        let stop = Arc::new(stop);
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, source.clone(), stop.clone()));
                }
                // Out of file descriptors, most likely: not a busy loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// One connection: its request, its answer, and the stop it may ask for.
async fn connection(
    mut stream: UnixStream,
    source: Arc<Source>,
    stop: Arc<watch::Sender<Option<Peer>>>,
) {
    let peer = stream.peer_cred().ok().map(|c| Peer {
        pid: c.pid(),
        uid: c.uid(),
    });
    let request = read_request(&mut stream, REQUEST_WAIT).await;
    let answer = answer(request, peer, &source);
    let _ = tokio::time::timeout(ANSWER_WAIT, async {
        stream.write_all(&answer.body).await?;
        stream.shutdown().await
    })
    .await;
    if let Some(by) = answer.stop {
        stop.send_replace(Some(by));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        time::Instant,
    };

    use super::*;
    use crate::{
        internal_events::Counter,
        status::{Snapshot, query, tests::source},
    };

    #[test]
    fn a_request_is_one_word_and_an_empty_one_asks_for_the_status() {
        for (line, request) in [
            (&b""[..], Request::Status),
            (b"status", Request::Status),
            (b" status\r", Request::Status),
            (b"stop", Request::Stop),
            (b"stop\r", Request::Stop),
        ] {
            assert_eq!(Request::parse(line), Ok(request), "{line:?}");
        }
        for line in [&b"STOP"[..], b"stop now", b"reboot", b"\xff"] {
            let err = Request::parse(line).unwrap_err();
            assert!(matches!(err, RequestError::Unknown(_)), "{line:?}: {err}");
        }
        assert_eq!(
            Request::parse(b"reboot").unwrap_err().to_string(),
            r#"unknown request "reboot": the status socket answers "status" and "stop""#
        );
    }

    /// What `read_request` makes of a client that writes `written`, then
    /// shuts its writing half if `ends`, else stays silent.
    async fn read(written: &[u8], ends: bool) -> (Result<Request, RequestError>, Duration) {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(written).await.unwrap();
        if ends {
            client.shutdown().await.unwrap();
        }
        let started = Instant::now();
        let request = read_request(server, Duration::from_millis(300)).await;
        (request, started.elapsed())
    }

    #[tokio::test]
    async fn a_request_ends_at_its_newline_or_the_end_of_the_input_and_silence_asks_for_status() {
        let quick = Duration::from_millis(250);
        for (written, ends, expected) in [
            (&b"stop\n"[..], false, Ok(Request::Stop)),
            (b"stop\n", true, Ok(Request::Stop)),
            (b"stop", true, Ok(Request::Stop)),
            (b"status\n", false, Ok(Request::Status)),
            // What a client from before requests does: nothing, then close.
            (b"", true, Ok(Request::Status)),
            (
                b"reboot\n",
                false,
                Err(RequestError::Unknown("reboot".into())),
            ),
            (&[b'a'; 100], false, Err(RequestError::TooLong)),
            (&[b'a'; 100], true, Err(RequestError::TooLong)),
        ] {
            let (request, took) = read(written, ends).await;
            assert_eq!(request, expected, "{:?}", String::from_utf8_lossy(written));
            assert!(took < quick, "{written:?} waited {took:?}");
        }
        // Silent and open, as `status` before requests: the status, once
        // the wait is over.
        let (request, took) = read(b"", false).await;
        assert_eq!(request, Ok(Request::Status));
        assert!(took >= Duration::from_millis(300), "{took:?}");
        // Half a request is not taken for a whole one.
        let (request, _) = read(b"sto", false).await;
        assert_eq!(request, Err(RequestError::Incomplete("sto".into())));
        // The longest request still fits.
        let mut longest = vec![b'a'; REQUEST_LIMIT];
        longest.push(b'\n');
        let (request, _) = read(&longest, false).await;
        assert_eq!(
            request,
            Err(RequestError::Unknown("a".repeat(REQUEST_LIMIT)))
        );
    }

    fn reply(answer: &Answer) -> Reply {
        serde_json::from_slice(&answer.body).unwrap()
    }

    #[test]
    fn stop_is_followed_only_from_root_and_a_bad_request_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(dir.path());
        let pid = std::process::id();

        let root = Peer {
            pid: Some(4242),
            uid: 0,
        };
        let followed = answer(Ok(Request::Stop), Some(root), &source);
        assert_eq!(followed.stop, Some(root));
        assert_eq!(
            String::from_utf8_lossy(&followed.body),
            format!(r#"{{"stopping":true,"pid":{pid}}}"#)
        );

        let nobody = Peer {
            pid: Some(4243),
            uid: 65534,
        };
        let refused = answer(Ok(Request::Stop), Some(nobody), &source);
        assert_eq!(refused.stop, None);
        assert_eq!(
            reply(&refused),
            Reply {
                stopping: Some(false),
                pid,
                error: Some(
                    "stop refused: only root (uid 0) may stop the agent; pid 4243 uid 65534 asked"
                        .into()
                ),
            }
        );
        let unknown = answer(Ok(Request::Stop), None, &source);
        assert_eq!(unknown.stop, None, "credentials unread: not trusted");
        assert_eq!(reply(&unknown).stopping, Some(false));
        assert_eq!(source.registry.get(Counter::StopsRefused), 2);

        let bad = answer(
            Err(RequestError::Unknown("reboot".into())),
            Some(root),
            &source,
        );
        assert_eq!(bad.stop, None);
        let bad = reply(&bad);
        assert_eq!(bad.stopping, None);
        assert!(bad.error.unwrap().contains(r#""reboot""#));

        let status = answer(Ok(Request::Status), Some(nobody), &source);
        assert_eq!(status.stop, None);
        let snapshot: Snapshot = serde_json::from_slice(&status.body).unwrap();
        assert_eq!(snapshot.pid, pid);
    }

    /// Over a real socket: a silent client does not hold up the next one,
    /// a client from before requests still gets the status, and a stop
    /// request reaches the run loop, after its answer, when it is root's
    /// (this test's uid decides which).
    #[tokio::test]
    async fn a_silent_client_holds_up_no_one_and_stop_reaches_the_run_loop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.sock");
        let server = Server::bind(&path).unwrap();
        let (stop, mut stop_requests) = watch::channel(None);
        let task = tokio::spawn(server.serve(Arc::new(source(dir.path())), stop));

        let p = path.clone();
        let (silent, took) = tokio::task::spawn_blocking(move || {
            let silent = std::os::unix::net::UnixStream::connect(&p).unwrap();
            let started = Instant::now();
            query(&p).unwrap();
            (silent, started.elapsed())
        })
        .await
        .unwrap();
        assert!(
            took < REQUEST_WAIT,
            "status waited {took:?} for a silent client"
        );
        // The silent client, as `status` before requests: the snapshot.
        let body = tokio::task::spawn_blocking(move || {
            let mut silent = silent;
            let mut body = Vec::new();
            silent.read_to_end(&mut body).unwrap();
            body
        })
        .await
        .unwrap();
        let snapshot: Snapshot = serde_json::from_slice(&body).unwrap();
        assert_eq!(snapshot.pid, std::process::id());
        assert!(stop_requests.borrow().is_none());

        let p = path.clone();
        let body = tokio::task::spawn_blocking(move || {
            let mut client = std::os::unix::net::UnixStream::connect(&p).unwrap();
            client.write_all(b"stop\n").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut body = Vec::new();
            client.read_to_end(&mut body).unwrap();
            body
        })
        .await
        .unwrap();
        let reply: Reply = serde_json::from_slice(&body).unwrap();
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid == 0 {
            assert_eq!(reply.stopping, Some(true), "{reply:?}");
            tokio::time::timeout(Duration::from_secs(5), stop_requests.changed())
                .await
                .unwrap()
                .unwrap();
            let by = stop_requests.borrow().unwrap();
            assert_eq!(
                by,
                Peer {
                    pid: Some(std::process::id() as i32),
                    uid: 0
                }
            );
        } else {
            assert_eq!(reply.stopping, Some(false), "{reply:?}");
            assert!(reply.error.unwrap().contains(&format!("uid {uid} asked")));
            assert!(stop_requests.borrow().is_none());
        }
        task.abort();
        let _ = task.await;
    }
}
