//! A DNS server over UDP for tests, and a small client to ask it (or the
//! agent's DNS proxy) questions. Built on hickory-proto, which is
//! re-exported for the messages the client returns.
//!
//! The server answers A queries for the names it is told about: a set
//! address ([`DnsServer::answer`], [`DnsServer::fixed`]), a fresh address
//! at every query ([`DnsServer::fresh`]), or never ([`DnsServer::silent`]).
//! Other queries, for a known name (AAAA among them) or an unknown one, get
//! an empty NOERROR answer.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use safeguard_test_support::dns::DnsServer;
//!
//! let upstream = DnsServer::start_on("127.0.0.1:0".parse().unwrap()).unwrap();
//! upstream
//!     .fresh("denied.test")
//!     .fixed("allowed.test", Ipv4Addr::LOCALHOST)
//!     .silent("silent.test");
//! let port = upstream.port();
//! ```

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use hickory_proto;
use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};

/// The first address a fresh name hands out; each A query for a fresh name
/// gets the next one (127.0.1.1, 127.0.1.2, ...), one sequence for all of
/// the server's fresh names.
pub const FRESH_FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);

/// TTL of an answer set with [`DnsServer::answer`], and of a fresh one.
pub const SHORT_TTL: u32 = 1;

/// TTL of an answer set with [`DnsServer::fixed`].
pub const FIXED_TTL: u32 = 60;

/// How the server answers for one name.
enum Behaviour {
    /// This address, with this TTL.
    Address { ip: Ipv4Addr, ttl: u32 },
    /// A new address at each A query; those handed out so far.
    Fresh { handed_out: Vec<Ipv4Addr> },
    /// No answer at all: the query is dropped.
    Silent,
}

struct Entry {
    /// The name as given, the owner of the records answered.
    name: Name,
    behaviour: Behaviour,
}

#[derive(Default)]
struct State {
    /// By [`key`].
    names: HashMap<String, Entry>,
    /// Queries received, by [`key`] of the name asked (known or not).
    queries: HashMap<String, usize>,
    /// Fresh addresses handed out, all names together.
    fresh_count: u32,
}

/// A DNS server on a UDP socket of its own, answering from a thread until
/// dropped.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// A server on 127.0.0.1 (a free port) for one name: A queries for
    /// `name` get `first` with a TTL of one second, until
    /// [`DnsServer::answer`] changes it. Panics if the socket cannot be
    /// bound.
    pub fn start(name: &str, first: Ipv4Addr) -> Self {
        let server = Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind a UDP socket on 127.0.0.1");
        server.answer(name, first);
        server
    }

    /// A server on `addr` (port 0: a free one) that knows no name yet.
    pub fn start_on(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        // The thread looks at `stop` this often.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("dns-server".into())
            .spawn({
                let (state, stop) = (state.clone(), stop.clone());
                move || serve(&socket, &state, &stop)
            })?;
        Ok(Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// From now on, A queries for `name` get `ip` with a TTL of one second.
    /// Panics if `name` is no DNS name.
    pub fn answer(&self, name: &str, ip: Ipv4Addr) -> &Self {
        self.set(name, Behaviour::Address { ip, ttl: SHORT_TTL })
    }

    /// From now on, A queries for `name` get `ip` with a TTL of 60 seconds.
    /// Panics if `name` is no DNS name.
    pub fn fixed(&self, name: &str, ip: Ipv4Addr) -> &Self {
        self.set(name, Behaviour::Address { ip, ttl: FIXED_TTL })
    }

    /// From now on, each A query for `name` gets an address never handed
    /// out before (see [`FRESH_FIRST`]), with a TTL of one second. Panics
    /// if `name` is no DNS name.
    pub fn fresh(&self, name: &str) -> &Self {
        self.set(name, Behaviour::Fresh { handed_out: vec![] })
    }

    /// From now on, queries for `name` are dropped, never answered. Panics
    /// if `name` is no DNS name.
    pub fn silent(&self, name: &str) -> &Self {
        self.set(name, Behaviour::Silent)
    }

    /// The addresses handed out for the fresh name `name` so far, oldest
    /// first (empty for a name that is not fresh).
    pub fn handed_out(&self, name: &str) -> Vec<Ipv4Addr> {
        match self.state.lock().unwrap().names.get(&key_str(name)) {
            Some(Entry {
                behaviour: Behaviour::Fresh { handed_out },
                ..
            }) => handed_out.clone(),
            _ => vec![],
        }
    }

    /// How many queries (of any type, answered or not) named `name`.
    pub fn queries(&self, name: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.queries.get(&key_str(name)).copied().unwrap_or(0)
    }

    fn set(&self, name: &str, behaviour: Behaviour) -> &Self {
        let owner = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .unwrap_or_else(|e| panic!("{name:?} is no DNS name: {e}"));
        let entry = Entry {
            name: owner,
            behaviour,
        };
        self.state
            .lock()
            .unwrap()
            .names
            .insert(key_str(name), entry);
        self
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A name as the server's tables know it: lower case, no final dot.
fn key_str(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn key(name: &Name) -> String {
    key_str(&name.to_ascii())
}

/// Answers queries on `socket` until `stop` is set.
fn serve(socket: &UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let reply = respond(&mut state.lock().unwrap(), &query);
        if let Some(bytes) = reply.and_then(|m| m.to_vec().ok()) {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

/// The answer to `query`, or `None` when it names a silent name.
fn respond(state: &mut State, query: &Message) -> Option<Message> {
    let State {
        names,
        queries,
        fresh_count,
    } = state;
    let mut answer = Message::new();
    answer
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .set_response_code(ResponseCode::NoError);
    let mut silent = false;
    for q in query.queries() {
        let key = key(q.name());
        *queries.entry(key.clone()).or_default() += 1;
        answer.add_query(q.clone());
        let Some(entry) = names.get_mut(&key) else {
            continue;
        };
        let (ip, ttl) = match &mut entry.behaviour {
            Behaviour::Silent => {
                silent = true;
                continue;
            }
            _ if q.query_type() != RecordType::A => continue,
            Behaviour::Address { ip, ttl } => (*ip, *ttl),
            Behaviour::Fresh { handed_out } => {
                let ip = Ipv4Addr::from(u32::from(FRESH_FIRST) + *fresh_count);
                *fresh_count += 1;
                handed_out.push(ip);
                (ip, SHORT_TTL)
            }
        };
        answer.add_answer(Record::from_rdata(entry.name.clone(), ttl, RData::A(A(ip))));
    }
    (!silent).then_some(answer)
}

/// A query sent from a UDP socket of its own, its reply not read yet.
pub struct PendingQuery {
    socket: UdpSocket,
    id: u16,
    sent: Instant,
}

/// A reply to a [`PendingQuery`].
pub struct Reply {
    pub message: Message,
    /// From the query's sending to the reply's reading.
    pub elapsed: Duration,
}

impl Reply {
    pub fn response_code(&self) -> ResponseCode {
        self.message.response_code()
    }

    /// The addresses of the reply's A records, in order.
    pub fn a(&self) -> Vec<Ipv4Addr> {
        self.message
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }
}

/// Sends a query of `kind` for `name` (recursion desired) to `server` from
/// a new socket on the loopback address of `server`'s family.
pub fn send_query(server: SocketAddr, name: &str, kind: RecordType) -> io::Result<PendingQuery> {
    static NEXT_ID: AtomicU16 = AtomicU16::new(0);
    let id = (std::process::id() as u16).wrapping_add(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let owner = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(owner, kind));
    let bytes = message.to_vec().map_err(io::Error::other)?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    // Connected: only the server's replies reach the socket, and an ICMP
    // port unreachable shows as ECONNREFUSED.
    socket.connect(server)?;
    let sent = Instant::now();
    socket.send(&bytes)?;
    Ok(PendingQuery { socket, id, sent })
}

/// [`send_query`], then [`PendingQuery::reply`].
pub fn query(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    within: Duration,
) -> io::Result<Reply> {
    send_query(server, name, kind)?.reply(within)
}

impl PendingQuery {
    /// Whether a reply has arrived (without reading it).
    pub fn is_answered(&self) -> io::Result<bool> {
        self.socket.set_nonblocking(true)?;
        let peeked = self.socket.peek(&mut [0u8; 1]);
        self.socket.set_nonblocking(false)?;
        match peeked {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `within` for the reply. A reply that does not parse, is
    /// no response, or carries another id is an `InvalidData` error; none
    /// in time, `TimedOut`.
    pub fn reply(self, within: Duration) -> io::Result<Reply> {
        self.socket
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))?;
        let mut buf = [0u8; 4096];
        let n = match self.socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply within {within:?}"),
                ));
            }
            Err(e) => return Err(e),
        };
        let elapsed = self.sent.elapsed();
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let message =
            Message::from_vec(&buf[..n]).map_err(|e| invalid(format!("unreadable reply: {e}")))?;
        if message.message_type() != MessageType::Response {
            return Err(invalid(format!("not a response: {message}")));
        }
        if message.id() != self.id {
            return Err(invalid(format!(
                "reply id {}, query id {}: {message}",
                message.id(),
                self.id
            )));
        }
        Ok(Reply { message, elapsed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITHIN: Duration = Duration::from_secs(5);

    fn server() -> DnsServer {
        let server = DnsServer::start_on("127.0.0.1:0".parse().unwrap()).unwrap();
        server
            .fresh("denied.test")
            .fixed("allowed.test", Ipv4Addr::LOCALHOST)
            .silent("silent.test");
        server
    }

    #[test]
    fn a_fresh_name_gets_a_new_address_at_each_query() {
        let server = server();
        let got: Vec<Ipv4Addr> = (0..3)
            .map(|_| {
                let reply = query(server.addr(), "denied.test", RecordType::A, WITHIN).unwrap();
                assert_eq!(reply.message.answers()[0].ttl(), SHORT_TTL);
                let a = reply.a();
                assert_eq!(a.len(), 1, "{}", reply.message);
                a[0]
            })
            .collect();
        let want: Vec<Ipv4Addr> = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(server.handed_out("denied.test"), want);
        assert_eq!(server.queries("denied.test"), 3);
        assert!(server.handed_out("allowed.test").is_empty());
    }

    #[test]
    fn a_fixed_name_keeps_its_address_for_a_minute() {
        let server = server();
        for _ in 0..2 {
            let reply = query(server.addr(), "Allowed.Test", RecordType::A, WITHIN).unwrap();
            assert_eq!(reply.response_code(), ResponseCode::NoError);
            assert_eq!(reply.a(), vec![Ipv4Addr::LOCALHOST]);
            assert_eq!(reply.message.answers()[0].ttl(), FIXED_TTL);
        }
        assert_eq!(server.queries("allowed.test"), 2);
    }

    #[test]
    fn aaaa_and_unknown_names_get_an_empty_noerror_answer() {
        let server = server();
        for (name, kind) in [
            ("allowed.test", RecordType::AAAA),
            ("denied.test", RecordType::AAAA),
            ("unknown.test", RecordType::A),
        ] {
            let reply = query(server.addr(), name, kind, WITHIN).unwrap();
            assert_eq!(reply.response_code(), ResponseCode::NoError, "{name}");
            assert!(reply.message.answers().is_empty(), "{}", reply.message);
        }
        assert!(server.handed_out("denied.test").is_empty());
        assert_eq!(server.queries("unknown.test"), 1);
    }

    #[test]
    fn a_silent_name_is_never_answered_but_counted() {
        let server = server();
        let pending = send_query(server.addr(), "silent.test", RecordType::A).unwrap();
        let other = query(server.addr(), "allowed.test", RecordType::A, WITHIN).unwrap();
        assert_eq!(other.a(), vec![Ipv4Addr::LOCALHOST]);
        assert!(!pending.is_answered().unwrap());
        let e = pending.reply(Duration::from_millis(300)).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(server.queries("silent.test"), 1);
    }

    #[test]
    fn answer_changes_the_address_of_a_started_name() {
        let server = DnsServer::start("blocked.test", Ipv4Addr::new(127, 0, 0, 3));
        let ask = || query(server.addr(), "blocked.test", RecordType::A, WITHIN).unwrap();
        assert_eq!(ask().a(), vec![Ipv4Addr::new(127, 0, 0, 3)]);
        server.answer("blocked.test", Ipv4Addr::new(127, 0, 0, 4));
        let reply = ask();
        assert_eq!(reply.a(), vec![Ipv4Addr::new(127, 0, 0, 4)]);
        assert_eq!(reply.message.answers()[0].ttl(), SHORT_TTL);
    }

    #[test]
    fn serves_on_ipv6() {
        let Ok(server) = DnsServer::start_on("[::1]:0".parse().unwrap()) else {
            eprintln!("skipped: no IPv6 loopback");
            return;
        };
        server.fixed("allowed.test", Ipv4Addr::LOCALHOST);
        let reply = query(server.addr(), "allowed.test", RecordType::A, WITHIN).unwrap();
        assert_eq!(reply.a(), vec![Ipv4Addr::LOCALHOST]);
    }
}
