//! `dns_proxy`: the agent answers DNS itself. Each query is forwarded to
//! the upstream servers; when the answer speaks of a name under a domain
//! rule, its addresses are put in force (the run loop compiles them into
//! the policy, see `agent::reload::Live::apply_learned`) before the answer
//! goes back, so a client never holds an address the rules do not know
//! yet: no window, whatever the TTL and whatever each client is told.
//!
//! When the addresses cannot be put in force, or no upstream answers, the
//! client gets SERVFAIL. Queries are handled concurrently (up to
//! [`IN_FLIGHT`]), so one upstream that does not answer stalls no other.
//! UDP and TCP (a client retries over TCP when an answer is truncated).
//!
//! The proxy forwards messages as they are; hickory-proto only reads them.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{RData, Record},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Semaphore, mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    config::DnsProxyConfig,
    internal_events::{DnsProxyAnswered, DnsProxyOutcome, Registry},
};

/// How long each upstream has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the run loop has to put a rule's addresses in force.
const IN_FORCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries handled at once; past it, reading waits.
const IN_FLIGHT: usize = 512;
/// Largest DNS message (over TCP; UDP answers are smaller).
const MESSAGE_MAX: usize = 65_535;

/// Addresses an answer gave for a name under a domain rule, to be put in
/// force before the answer goes back (`done` says whether they were).
#[derive(Debug)]
pub struct Learned {
    /// The rule's name, as `network.domain` spells it.
    pub name: String,
    pub addrs: Vec<IpAddr>,
    /// The answer's TTL (the smallest of its records').
    pub ttl: Duration,
    pub done: oneshot::Sender<bool>,
}

/// An answer with addresses, passed on to a client: reported as
/// `safeguard.dns_proxy.answer`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The name asked about, lowercase, without its final dot.
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub client: SocketAddr,
    pub outcome: DnsProxyOutcome,
}

/// What the proxy hands the run loop.
#[derive(Debug)]
pub enum FromProxy {
    Learned(Learned),
    Answer(Answer),
}

/// Answers waiting to be reported; past it, the oldest wait and new ones
/// are counted as queue drops.
const ANSWERS_WAITING: usize = 1024;

/// The names of the domain rules in force, lowercase, without a final dot.
pub type RuleNames = Arc<BTreeSet<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "dns_proxy.bind {addr}: {source}{hint}",
        hint = if source.kind() == io::ErrorKind::AddrInUse {
            " (another DNS server listens there: systemd-resolved, dnsmasq?)"
        } else if source.kind() == io::ErrorKind::PermissionDenied {
            " (a port below 1024 needs CAP_NET_BIND_SERVICE)"
        } else {
            ""
        }
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("dns_proxy.bind: none of {0:?} is an address of this host")]
    NoAddress(Vec<SocketAddr>),
    #[error(
        "dns_proxy.upstreams is empty and /etc/resolv.conf names no server other than the proxy's own addresses"
    )]
    NoUpstream,
}

/// The running proxy: its listeners, the rule names it judges by, and
/// the addresses it waits to see in force (`learned`).
pub struct Proxy {
    tasks: Vec<JoinHandle<()>>,
    names: watch::Sender<RuleNames>,
    learned: mpsc::Receiver<Learned>,
    answers: mpsc::Receiver<Answer>,
    pub bound: Vec<SocketAddr>,
}

impl Proxy {
    /// Listens on every `config.bind` address that is this host's (one
    /// that is not is said and left out; one in use is an error).
    pub async fn start(
        config: &DnsProxyConfig,
        names: RuleNames,
        registry: Arc<Registry>,
    ) -> Result<Self, ProxyError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in &config.bind {
            match UdpSocket::bind(addr).await {
                Ok(socket) => udp.push(socket),
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                    warn!(
                        "dns_proxy.bind {addr}: not an address of this host: not listening there"
                    );
                    continue;
                }
                Err(source) => return Err(ProxyError::Bind { addr, source }),
            }
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })?;
            tcp.push(listener);
        }
        if udp.is_empty() {
            return Err(ProxyError::NoAddress(config.bind.clone()));
        }
        let bound: Vec<SocketAddr> = udp.iter().filter_map(|s| s.local_addr().ok()).collect();
        let upstreams = if config.upstreams.is_empty() {
            system_upstreams(&bound)
        } else {
            config.upstreams.clone()
        };
        if upstreams.is_empty() {
            return Err(ProxyError::NoUpstream);
        }
        let (names_tx, names_rx) = watch::channel(names);
        let (learned, learned_rx) = mpsc::channel(64);
        let (answers, answers_rx) = mpsc::channel(ANSWERS_WAITING);
        let shared = Arc::new(Shared {
            upstreams,
            names: names_rx,
            learned,
            answers,
            registry,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        });
        let mut tasks = Vec::new();
        for socket in udp {
            tasks.push(tokio::spawn(serve_udp(Arc::new(socket), shared.clone())));
        }
        for listener in tcp {
            tasks.push(tokio::spawn(serve_tcp(listener, shared.clone())));
        }
        info!(
            "dns_proxy: answering on {bound:?}, asking {:?}",
            shared.upstreams
        );
        Ok(Self {
            tasks,
            names: names_tx,
            learned: learned_rx,
            answers: answers_rx,
            bound,
        })
    }

    /// The domain rules' names changed (a reload).
    pub fn set_names(&self, names: RuleNames) {
        self.names.send_replace(names);
    }

    /// What the run loop is to do next: put an answer's addresses in
    /// force (and say so on its `done`) before anything else, or report an
    /// answer.
    pub async fn next(&mut self) -> Option<FromProxy> {
        tokio::select! {
            biased;
            Some(learned) = self.learned.recv() => Some(FromProxy::Learned(learned)),
            Some(answer) = self.answers.recv() => Some(FromProxy::Answer(answer)),
            else => None,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Shared {
    upstreams: Vec<SocketAddr>,
    names: watch::Receiver<RuleNames>,
    learned: mpsc::Sender<Learned>,
    answers: mpsc::Sender<Answer>,
    registry: Arc<Registry>,
    in_flight: Arc<Semaphore>,
}

/// The name servers of /etc/resolv.conf, less the proxy's own addresses
/// (a host pointed at its proxy would otherwise ask itself).
fn system_upstreams(own: &[SocketAddr]) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|addr| !own.contains(addr))
        .collect()
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MESSAGE_MAX];
    loop {
        let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
            return;
        };
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                debug!("dns_proxy: receive: {e}");
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let (socket, shared) = (socket.clone(), shared.clone());
        tokio::spawn(async move {
            if let Some(answer) = answer(&shared, &query, client).await {
                let _ = socket.send_to(&answer, client).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                debug!("dns_proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(serve_tcp_client(stream, shared.clone()));
    }
}

/// One TCP client: length-prefixed queries, answered in order.
async fn serve_tcp_client(mut stream: TcpStream, shared: Arc<Shared>) {
    let Ok(client) = stream.peer_addr() else {
        return;
    };
    loop {
        let Ok(len) = tokio::time::timeout(Duration::from_secs(10), stream.read_u16()).await else {
            return; // idle
        };
        let Ok(len) = len else { return };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Ok(_permit) = shared.in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(answer) = answer(&shared, &query, client).await else {
            return;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The answer to one query (`None`: not a query, nothing to answer).
async fn answer(shared: &Shared, query: &[u8], client: SocketAddr) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let name = question(&request);
    let Some((bytes, response)) = forward(&shared.upstreams, &request, query).await else {
        shared.registry.emit(DnsProxyAnswered {
            outcome: DnsProxyOutcome::UpstreamFailure,
            name: &name,
        });
        return servfail(&request);
    };
    let names = shared.names.borrow().clone();
    let learned = ruled_addresses(&request, &response, &names);
    let outcome = if learned.is_empty() {
        DnsProxyOutcome::Answered
    } else {
        DnsProxyOutcome::RuleHit
    };
    for (rule, addrs, ttl) in learned {
        if !put_in_force(shared, rule.clone(), addrs, ttl).await {
            shared.registry.emit(DnsProxyAnswered {
                outcome: DnsProxyOutcome::NotInForce,
                name: &rule,
            });
            return servfail(&request);
        }
    }
    shared.registry.emit(DnsProxyAnswered {
        outcome,
        name: &name,
    });
    let addrs = addresses(&response);
    if !addrs.is_empty() {
        let reported = Answer {
            name,
            addrs,
            client,
            outcome,
        };
        if shared.answers.try_send(reported).is_err() {
            shared.registry.emit(crate::internal_events::QueueFull);
        }
    }
    Some(bytes)
}

/// Every address in `response`'s answer section.
fn addresses(response: &Message) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = response.answers().iter().filter_map(address).collect();
    out.dedup();
    out
}

fn address(r: &Record) -> Option<IpAddr> {
    match r.data() {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// Asks the run loop to put `addrs` in force and waits until it has.
async fn put_in_force(shared: &Shared, name: String, addrs: Vec<IpAddr>, ttl: Duration) -> bool {
    let (done, in_force) = oneshot::channel();
    let learned = Learned {
        name,
        addrs,
        ttl,
        done,
    };
    let asked = async {
        shared.learned.send(learned).await.ok()?;
        in_force.await.ok()
    };
    matches!(
        tokio::time::timeout(IN_FORCE_TIMEOUT, asked).await,
        Ok(Some(true))
    )
}

/// The first upstream's answer to `query` (its bytes and as read), each
/// upstream in turn; `None` when none answers.
async fn forward(
    upstreams: &[SocketAddr],
    request: &Message,
    query: &[u8],
) -> Option<(Vec<u8>, Message)> {
    for &upstream in upstreams {
        match ask(upstream, request.id(), query).await {
            Ok(answer) => return Some(answer),
            Err(e) => debug!("dns_proxy: upstream {upstream}: {e}"),
        }
    }
    None
}

/// `upstream`'s answer to `query` over UDP, or over TCP when the UDP one
/// is truncated (the truncated one, if TCP fails: what the client would
/// have got from the upstream itself).
async fn ask(upstream: SocketAddr, id: u16, query: &[u8]) -> io::Result<(Vec<u8>, Message)> {
    let answer = ask_udp(upstream, id, query).await?;
    if !answer.1.truncated() {
        return Ok(answer);
    }
    match ask_tcp(upstream, id, query).await {
        Ok(whole) => Ok(whole),
        Err(e) => {
            debug!("dns_proxy: upstream {upstream} over TCP: {e}; passing the truncated answer");
            Ok(answer)
        }
    }
}

async fn ask_tcp(upstream: SocketAddr, id: u16, query: &[u8]) -> io::Result<(Vec<u8>, Message)> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut stream = TcpStream::connect(upstream).await?;
        stream.write_u16(len).await?;
        stream.write_all(query).await?;
        let n = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(n)];
        stream.read_exact(&mut buf).await?;
        match Message::from_vec(&buf) {
            Ok(m) if m.id() == id && m.message_type() == MessageType::Response => Ok((buf, m)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not the answer to the query",
            )),
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

async fn ask_udp(upstream: SocketAddr, id: u16, query: &[u8]) -> io::Result<(Vec<u8>, Message)> {
    let local: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MESSAGE_MAX];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = socket.recv(&mut buf).await?;
            // Anything but the answer to this query (a late answer to
            // another, a forgery) is not it.
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.id() == id && m.message_type() == MessageType::Response => {
                    return Ok((buf[..n].to_vec(), m));
                }
                _ => continue,
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

/// SERVFAIL for `request`, its question kept.
fn servfail(request: &Message) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::ServFail);
    m.add_queries(request.queries().iter().cloned());
    m.to_vec().ok()
}

/// `name` lowercase, without its final dot.
fn plain(name: &hickory_proto::rr::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// The name `request` asks about, for the log.
fn question(request: &Message) -> String {
    request
        .queries()
        .first()
        .map(|q| plain(q.name()))
        .unwrap_or_default()
}

/// The addresses `response` gives for names under domain rules: every
/// address of the answer when the question's name is a rule's (through
/// whatever CNAMEs), and otherwise the addresses of records whose own name
/// is a rule's. `(rule name, addresses, TTL)`.
fn ruled_addresses(
    request: &Message,
    response: &Message,
    names: &BTreeSet<String>,
) -> Vec<(String, Vec<IpAddr>, Duration)> {
    let mut out: Vec<(String, Vec<IpAddr>, Duration)> = Vec::new();
    let mut add = |name: String, ip: IpAddr, ttl: u32| {
        let ttl = Duration::from_secs(u64::from(ttl));
        match out.iter_mut().find(|(n, ..)| *n == name) {
            Some((_, addrs, min)) => {
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
                *min = (*min).min(ttl);
            }
            None => out.push((name, vec![ip], ttl)),
        }
    };
    let asked = request
        .queries()
        .iter()
        .map(|q| plain(q.name()))
        .find(|n| names.contains(n));
    for record in response.answers() {
        let Some(ip) = address(record) else { continue };
        if let Some(rule) = &asked {
            add(rule.clone(), ip, record.ttl());
        }
        let own = plain(record.name());
        if names.contains(&own) && asked.as_ref() != Some(&own) {
            add(own, ip, record.ttl());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::Query,
        rr::{Name, RecordType, rdata},
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn request(q: &str) -> Message {
        let mut m = Message::new();
        m.set_id(7).add_query(Query::query(name(q), RecordType::A));
        m
    }

    fn rules(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_ruled_question_takes_every_address_of_its_answer_through_cnames() {
        let mut response = request("WWW.Denied.test.");
        response.add_answer(Record::from_rdata(
            name("www.denied.test."),
            300,
            RData::CNAME(rdata::CNAME(name("edge.cdn.test."))),
        ));
        response.add_answer(Record::from_rdata(
            name("edge.cdn.test."),
            20,
            RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
        response.add_answer(Record::from_rdata(
            name("edge.cdn.test."),
            60,
            RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 2))),
        ));
        let got = ruled_addresses(
            &request("WWW.Denied.test."),
            &response,
            &rules(&["www.denied.test"]),
        );
        assert_eq!(
            got,
            [(
                "www.denied.test".to_string(),
                vec![IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])],
                Duration::from_secs(20)
            )]
        );
    }

    #[test]
    fn an_answer_record_of_a_ruled_name_counts_and_others_do_not() {
        let mut response = request("other.test.");
        response.add_answer(Record::from_rdata(
            name("denied.test."),
            5,
            RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 9))),
        ));
        let got = ruled_addresses(&request("other.test."), &response, &rules(&["denied.test"]));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, [IpAddr::from([192, 0, 2, 9])]);
        assert!(
            ruled_addresses(&request("other.test."), &response, &rules(&["else.test"])).is_empty()
        );
    }

    /// An upstream that truncates its UDP answer is asked again over TCP.
    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        // UDP and TCP on one port of 127.0.0.1.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let upstream = udp.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..n]).unwrap();
            let mut cut = Message::new();
            cut.set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_truncated(true)
                .add_queries(query.queries().iter().cloned());
            udp.send_to(&cut.to_vec().unwrap(), from).await.unwrap();
        });
        tokio::spawn(async move {
            let (mut stream, _) = tcp.accept().await.unwrap();
            let n = stream.read_u16().await.unwrap();
            let mut buf = vec![0u8; usize::from(n)];
            stream.read_exact(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf).unwrap();
            let mut whole = Message::new();
            whole
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .add_queries(query.queries().iter().cloned())
                .add_answer(Record::from_rdata(
                    name("big.test."),
                    60,
                    RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 44))),
                ));
            let bytes = whole.to_vec().unwrap();
            stream.write_u16(bytes.len() as u16).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
        });
        let req = request("big.test.");
        let (_, answer) = ask(upstream, req.id(), &req.to_vec().unwrap())
            .await
            .unwrap();
        assert!(!answer.truncated());
        assert_eq!(addresses(&answer), [IpAddr::from([192, 0, 2, 44])]);
    }

    #[test]
    fn servfail_keeps_the_id_and_question() {
        let req = request("silent.test.");
        let m = Message::from_vec(&servfail(&req).unwrap()).unwrap();
        assert_eq!(m.id(), 7);
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        assert_eq!(m.queries(), req.queries());
    }
}
