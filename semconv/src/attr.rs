//! Attribute keys.
//!
//! [`RECORD`] are on log records, spans and span events (and, as labels,
//! on metrics); [`RESOURCE`] are on the Resource every signal carries.

names! {
    /// Attributes of log records, spans, span events and metric points.
    RECORD {
        // --- OpenTelemetry semantic conventions -----------------------------

        /// Process id (the kernel's tgid).
        PROCESS_PID = "process.pid";
        /// Parent process id.
        PROCESS_PARENT_PID = "process.parent_pid";
        /// Base name of [`process.executable.path`](PROCESS_EXECUTABLE_PATH),
        /// on the events that carry the path (the task's `comm` is
        /// [`safeguard.process.comm`](PROCESS_COMM)).
        PROCESS_EXECUTABLE_NAME = "process.executable.name";
        /// Full path of the process's executable.
        PROCESS_EXECUTABLE_PATH = "process.executable.path";
        /// Effective user id of the process: whose rights it acts with
        /// (root in a setuid-root program run by anyone).
        PROCESS_USER_ID = "process.user.id";
        /// Real user id of the process: who started it.
        PROCESS_REAL_USER_ID = "process.real_user.id";
        /// All command-line arguments of the process, `argv[0]` first.
        PROCESS_COMMAND_ARGS = "process.command_args";
        /// The exit status of a process that ended normally.
        PROCESS_EXIT_CODE = "process.exit.code";
        /// Full path of the file the operation was on (a rename's source).
        FILE_PATH = "file.path";
        /// `tcp` or `udp`.
        NETWORK_TRANSPORT = "network.transport";
        /// `ipv4` or `ipv6`.
        NETWORK_TYPE = "network.type";
        /// The socket's own address.
        NETWORK_LOCAL_ADDRESS = "network.local.address";
        /// The socket's own port.
        NETWORK_LOCAL_PORT = "network.local.port";
        /// The other end's address: destination of a connect or send, source
        /// of a receive or an inbound connection.
        NETWORK_PEER_ADDRESS = "network.peer.address";
        /// On `safeguard.dns_proxy.answer`: the name asked about, lowercase,
        /// without its final dot.
        DNS_QUESTION_NAME = "dns.question.name";
        /// On `safeguard.dns_proxy.answer`: the addresses answered (A and
        /// AAAA records, through any CNAMEs).
        DNS_ANSWERS = "dns.answers";
        /// On `safeguard.dns_proxy.answer`: who asked (the client's address).
        CLIENT_ADDRESS = "client.address";
        /// The other end's port.
        NETWORK_PEER_PORT = "network.peer.port";
        /// Name of the node the agent watches: a `host.name` set in
        /// `OTEL_RESOURCE_ATTRIBUTES`, else `K8S_NODE_NAME` where set, else
        /// the host name in PID 1's UTS namespace (not a container's or
        /// pod's own), else the agent's own. Also a resource attribute.
        HOST_NAME = "host.name";
        /// The rule that matched, as written in the configuration.
        SECURITY_RULE_NAME = "security_rule.name";
        /// The list the rule came from, e.g. `files.deny`.
        SECURITY_RULE_RULESET_NAME = "security_rule.ruleset.name";
        /// Class of an error: why an export failed (`unavailable`,
        /// `timeout`, an HTTP status) or why an event could not be reported
        /// (`decode`, `unresolved_path`). See
        /// [`error_type`](crate::error_type).
        ERROR_TYPE = "error.type";
        /// On `safeguard.dns_proxy.query`: how the query was answered, one
        /// of the [`dns_proxy_outcome`](crate::dns_proxy_outcome) values.
        DNS_PROXY_OUTCOME = "safeguard.dns_proxy.outcome";
        /// On the `otel.sdk.exporter.*` metrics: the kind of the agent's
        /// OTLP exporter, one of the [`component_type`](crate::component_type)
        /// values.
        OTEL_COMPONENT_TYPE = "otel.component.type";
        /// On the `otel.sdk.exporter.*` metrics: the exporter's name,
        /// `<otel.component.type>/0` (the agent has one exporter per signal).
        OTEL_COMPONENT_NAME = "otel.component.name";
        /// Container id of the task, where its cgroup path shows one.
        CONTAINER_ID = "container.id";
        /// The container runtime (`docker`, `containerd`, `cri-o`, `podman`),
        /// where the cgroup path shows it.
        CONTAINER_RUNTIME_NAME = "container.runtime.name";
        /// The image the container was made from, as its runtime recorded it
        /// (`localhost/app:1.2`, `nginx:1.27`).
        CONTAINER_IMAGE_NAME = "container.image.name";
        /// UID of the Kubernetes pod the container belongs to.
        K8S_POD_UID = "k8s.pod.uid";

        // --- safeguard.* ----------------------------------------------------

        /// What happened to the operation: one of the [`decision`](crate::decision) values.
        DECISION = "safeguard.decision";
        /// The module's mode when the event happened: one of the [`mode`](crate::mode) values.
        MODE = "safeguard.mode";
        /// The policy module: one of the [`module`](crate::module) values.
        MODULE = "safeguard.module";
        /// The kernel hook that saw the operation, e.g. `lsm/file_open`.
        HOOK = "safeguard.hook";
        /// How the hook's row is covered on this kernel: one of the
        /// [`tier`](crate::tier) values.
        ENFORCEMENT_TIER = "safeguard.enforcement.tier";
        /// Monotonic event sequence number assigned in the kernel; a gap means
        /// records were lost (and counted).
        SEQUENCE = "safeguard.sequence";
        /// Real group id of the process (OpenTelemetry has no process group id).
        PROCESS_GROUP_ID = "safeguard.process.group_id";
        /// The task's command name (`comm`, at most 15 bytes): what the task
        /// calls itself, which it can change (`prctl(PR_SET_NAME)`), not
        /// necessarily its executable's name.
        PROCESS_COMM = "safeguard.process.comm";
        /// The kernel's id of the thread (task) behind the event, as
        /// `gettid()` returns it; equal to `process.pid` for a process's
        /// main thread. OpenTelemetry's `thread.id` is a runtime's own
        /// thread id, not this.
        THREAD_TID = "safeguard.thread.tid";
        /// cgroup v2 id of the task.
        CGROUP_ID = "safeguard.cgroup.id";
        /// How a file was opened: a list of `read`, `write`, `create`, `exec`,
        /// `truncate`, `append`.
        FILE_OPEN_MODE = "safeguard.file.open_mode";
        /// The raw open flags (`O_*`).
        FILE_OPEN_FLAGS = "safeguard.file.open_flags";
        /// Where a rename moves the file to.
        FILE_NEW_PATH = "safeguard.file.new_path";
        /// Protection of a mapping: a list of `read`, `write`, `exec`.
        FILE_MMAP_PROT = "safeguard.file.mmap_prot";
        /// The permission bits a chmod asked for, in octal (`0640`); whether
        /// the file got them is `safeguard.decision`.
        FILE_REQUESTED_MODE = "safeguard.file.requested_mode";
        /// The owner a chown asked for; absent when it left the owner
        /// unchanged (-1). Whether the file got it is `safeguard.decision`.
        FILE_REQUESTED_OWNER_ID = "safeguard.file.requested_owner.id";
        /// The group a chown asked for; absent when it left the group
        /// unchanged (-1). Whether the file got it is `safeguard.decision`.
        FILE_REQUESTED_GROUP_ID = "safeguard.file.requested_group.id";
        /// The ioctl request number.
        FILE_IOCTL_CMD = "safeguard.file.ioctl_cmd";
        /// The path was longer than the kernel program could follow and is cut
        /// at the top.
        FILE_PATH_TRUNCATED = "safeguard.file.path_truncated";
        /// The signal that ended a process.
        PROCESS_EXIT_SIGNAL = "safeguard.process.exit_signal";
        /// The task runs in a container: its cgroup is one a container
        /// runtime made, or below one (what `target: container` asks).
        PROCESS_IN_CONTAINER = "safeguard.process.in_container";
        /// The arguments did not fit in the kernel record and are cut.
        PROCESS_ARGS_TRUNCATED = "safeguard.process.args_truncated";
        /// A row of the policy coverage table, e.g. `files.open`,
        /// `network.connect`.
        ROW = "safeguard.row";
        /// The signal of an export: one of the [`signal`](crate::signal)
        /// values.
        EXPORT_SIGNAL = "safeguard.export.signal";
        /// Why the kernel lost a record: one of the
        /// [`drop_reason`](crate::drop_reason) values.
        DROP_REASON = "safeguard.drop.reason";
        /// On a process span (bool): the process was still running when the
        /// agent stopped, so the span was ended at shutdown.
        PROCESS_UNFINISHED = "safeguard.process.unfinished";
        /// On a process span (int): how many of the process's operations
        /// were blocked or would have been.
        PROCESS_BLOCKED_OPERATIONS = "safeguard.process.blocked_operations";
        /// A mount's source (device or path, as given).
        MOUNT_SOURCE = "safeguard.mount.source";
        /// Which way a connection or datagram goes, from the process's
        /// side: `outbound` (connect, send, bind) or `inbound` (accept,
        /// receive, getpeername). Not traffic counted at an interface
        /// (OpenTelemetry's `network.io.direction`).
        NETWORK_DIRECTION = "safeguard.network.direction";
        /// The address family of a socket made: `inet`, `inet6` or
        /// `packet`.
        NETWORK_SOCKET_FAMILY = "safeguard.network.socket.family";
        /// The type of a socket made: `raw` or `dgram` (a packet socket's
        /// cooked mode).
        NETWORK_SOCKET_TYPE = "safeguard.network.socket.type";
        /// The protocol number a socket was made with (for a packet
        /// socket, the EtherType in network order).
        NETWORK_SOCKET_PROTOCOL = "safeguard.network.socket.protocol";
        /// What an attempt on the agent was (`safeguard.agent.tamper`):
        /// `signal`, `signal_by_io`, `rlimit`, `ptrace`, `bpf_map`,
        /// `bpf_prog` or `pin`.
        TAMPER_ACTION = "safeguard.tamper.action";
        /// The signal of a refused `signal` or `signal_by_io` attempt.
        TAMPER_SIGNAL = "safeguard.tamper.signal";
        /// The kernel id of the map or program a refused `bpf_map` or
        /// `bpf_prog` attempt asked for.
        TAMPER_OBJECT_ID = "safeguard.tamper.object.id";
        /// The resource (`RLIMIT_*` number) of a refused `rlimit` attempt.
        TAMPER_RESOURCE = "safeguard.tamper.resource";
        /// The process id of the agent an attempt was on.
        TAMPER_AGENT_PID = "safeguard.tamper.agent.pid";
        /// Where a mount is (or is moved) to.
        MOUNT_TARGET = "safeguard.mount.target";
        /// The filesystem type of a mount.
        MOUNT_FSTYPE = "safeguard.mount.fstype";
        /// The mount flags (`MS_*`).
        MOUNT_FLAGS = "safeguard.mount.flags";
    }
    /// Resource attributes: on the Resource of every signal, not on each
    /// record. `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` override
    /// them.
    RESOURCE {
        /// Resource: `safeguard`, unless `OTEL_SERVICE_NAME` says otherwise.
        SERVICE_NAME = "service.name";
        /// Resource: the agent's version.
        SERVICE_VERSION = "service.version";
        /// Resource: a random UUID (version 4) per agent start; tells one
        /// run's records from the next.
        SERVICE_INSTANCE_ID = "service.instance.id";
        /// Resource: `opentelemetry`.
        TELEMETRY_SDK_NAME = "telemetry.sdk.name";
        /// Resource: `rust`.
        TELEMETRY_SDK_LANGUAGE = "telemetry.sdk.language";
        /// Resource: the version of the OpenTelemetry SDK crate
        /// (`opentelemetry_sdk`) the agent is built with.
        TELEMETRY_SDK_VERSION = "telemetry.sdk.version";
        /// Resource: the node's machine id (`/proc/1/root/etc/machine-id`,
        /// else `/etc/machine-id`), where one is set.
        HOST_ID = "host.id";
        /// Resource: the CPU architecture in the conventions' words
        /// (`amd64`, `arm64`, …).
        HOST_ARCH = "host.arch";
        /// Resource: `linux`.
        OS_TYPE = "os.type";
        /// Resource: the kernel release, as `uname -r` prints it.
        OS_VERSION = "os.version";
        /// Resource: the Kubernetes node (from `K8S_NODE_NAME`), where set.
        K8S_NODE_NAME = "k8s.node.name";
    }
}
