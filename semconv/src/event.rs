//! Event names: the OTLP LogRecord `EventName` of each audit event, and
//! the name of the span event it becomes on its process's span.

names! {
    /// A file was opened (or an open was refused).
    FILE_OPEN = "safeguard.file.open";
    /// A file was deleted (or the deletion was refused).
    FILE_UNLINK = "safeguard.file.unlink";
    /// A directory was removed (or the removal was refused).
    FILE_RMDIR = "safeguard.file.rmdir";
    /// A file was renamed or moved (or that was refused).
    FILE_RENAME = "safeguard.file.rename";
    /// A file was truncated (or that was refused).
    FILE_TRUNCATE = "safeguard.file.truncate";
    /// A file's permission bits were changed (or that was refused).
    FILE_CHMOD = "safeguard.file.chmod";
    /// A file's owner or group was changed (or that was refused).
    FILE_CHOWN = "safeguard.file.chown";
    /// A file was mapped into memory (or the mapping was refused).
    FILE_MMAP = "safeguard.file.mmap";
    /// An ioctl(2) on a file (or its refusal).
    FILE_IOCTL = "safeguard.file.ioctl";
    /// A hard link to a file was made (or that was refused).
    FILE_LINK = "safeguard.file.link";
    /// A symbolic link was made (or that was refused).
    FILE_SYMLINK = "safeguard.file.symlink";
    /// A directory was made (or that was refused).
    FILE_MKDIR = "safeguard.file.mkdir";
    /// A device, FIFO, socket or regular file was made with mknod(2) or open(2) with O_CREAT (or that was refused).
    FILE_MKNOD = "safeguard.file.mknod";
    /// A file descriptor was received over a Unix socket (or that was refused).
    FILE_RECEIVE = "safeguard.file.receive";
    /// A program was executed (or an exec was refused).
    PROCESS_EXEC = "safeguard.process.exec";
    /// An executable mapping (`mmap` or `mprotect` with `PROT_EXEC`) of a
    /// file the exec rules deny, refused or not: how a dynamic loader
    /// (`ld-linux.so /path/to/program`) runs a program without exec. The
    /// process keeps its program; `file.path` is the mapped file.
    PROCESS_EXEC_MAPPING = "safeguard.process.exec_mapping";
    /// A new process was created (fork, vfork, clone).
    PROCESS_FORK = "safeguard.process.fork";
    /// A process ended.
    PROCESS_EXIT = "safeguard.process.exit";
    /// A filesystem was mounted (or a mount was refused).
    MOUNT_MOUNT = "safeguard.mount.mount";
    /// A mount was moved (or the move was refused).
    MOUNT_MOVE = "safeguard.mount.move";
    /// connect(2) to a denied peer.
    NETWORK_CONNECT = "safeguard.network.connect";
    /// A datagram sent to a denied destination.
    NETWORK_SEND = "safeguard.network.send";
    /// A receive on a socket connected to a denied peer.
    NETWORK_RECEIVE = "safeguard.network.receive";
    /// getpeername(2) on a socket connected to a denied peer.
    NETWORK_GETPEERNAME = "safeguard.network.getpeername";
    /// bind(2) to a denied local address.
    NETWORK_BIND = "safeguard.network.bind";
    /// An inbound connection from a denied source.
    NETWORK_ACCEPT = "safeguard.network.accept";
    /// A raw or packet socket made (`network.raw`), refused or not: such a
    /// socket sends and receives below every address rule.
    NETWORK_SOCKET = "safeguard.network.socket";
    /// `dns_proxy` passed on an answer with addresses (A, AAAA); those of a
    /// name under a domain rule were in force before it went. What
    /// `safeguard learn` names destinations by.
    DNS_PROXY_ANSWER = "safeguard.dns_proxy.answer";
    /// An attempt on the agent itself refused by `kernel.protect`: a
    /// signal that would end or stop it, ptrace, a resource limit, a
    /// descriptor of one of its BPF maps or programs, the removal of a pin.
    AGENT_TAMPER = "safeguard.agent.tamper";
}

/// The key of a record's event name where the record is not OTLP (the
/// local JSON event log), as OpenTelemetry names it there; OTLP carries
/// the name in a field of its own (`EventName`).
pub const NAME_KEY: &str = "otel.event.name";

/// The key the local JSON event log gave the event name before
/// [`NAME_KEY`]. Readers still accept it, so that logs written by an
/// earlier version read.
pub const LEGACY_NAME_KEY: &str = "event_name";
