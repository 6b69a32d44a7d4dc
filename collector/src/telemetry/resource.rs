//! The Resource every signal carries: who is reporting.

use std::{ffi::CStr, os::fd::AsRawFd as _, path::Path, sync::OnceLock};

use opentelemetry::{Key, KeyValue};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value},
    resource::v1::Resource as ProtoResource,
};
use opentelemetry_sdk::{
    Resource,
    resource::{ResourceDetector as _, TelemetryResourceDetector},
};
use rand::Rng as _;
use semconv::attr;
use tracing::debug;

/// `service.*`, `telemetry.sdk.*`, `host.*`, `os.*` and, on Kubernetes,
/// `k8s.node.name` (from `K8S_NODE_NAME`, which the DaemonSet fills from
/// the downward API); `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`
/// override them.
pub fn resource() -> Resource {
    let mut attributes = vec![
        KeyValue::new(attr::SERVICE_NAME, "safeguard"),
        KeyValue::new(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        KeyValue::new(attr::SERVICE_INSTANCE_ID, uuid_v4(rand::rng().random())),
        KeyValue::new(attr::TELEMETRY_SDK_NAME, "opentelemetry"),
        KeyValue::new(attr::TELEMETRY_SDK_LANGUAGE, "rust"),
        KeyValue::new(attr::HOST_NAME, host_name()),
        KeyValue::new(attr::HOST_ARCH, host_arch(std::env::consts::ARCH)),
        KeyValue::new(attr::OS_TYPE, "linux"),
    ];
    if let Some(version) = sdk_version() {
        attributes.push(KeyValue::new(attr::TELEMETRY_SDK_VERSION, version));
    }
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        && !release.trim().is_empty()
    {
        attributes.push(KeyValue::new(attr::OS_VERSION, release.trim().to_string()));
    }
    // systemd's machine id is what the semantic conventions name as host.id
    // outside a cloud. PID 1's root is the node's where the agent runs in
    // a container with the host's PID namespace; the image's own
    // /etc/machine-id is empty there, or the same on every node.
    if let Some(id) = machine_id(&[
        Path::new("/proc/1/root/etc/machine-id"),
        Path::new("/etc/machine-id"),
    ]) {
        attributes.push(KeyValue::new(attr::HOST_ID, id));
    }
    if let Ok(node) = std::env::var("K8S_NODE_NAME")
        && !node.trim().is_empty()
    {
        attributes.push(KeyValue::new(attr::K8S_NODE_NAME, node.trim().to_string()));
    }
    let mut builder = Resource::builder_empty()
        .with_attributes(attributes)
        .with_attributes(from_env(
            &std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default(),
        ));
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME")
        && !name.trim().is_empty()
    {
        builder = builder.with_service_name(name.trim().to_string());
    }
    builder.build()
}

/// The name of the node the agent watches, for the Resource and for the
/// `host.name` of every event alike. Worked out once, so all signals carry
/// the same name for the whole run. A `host.name` the operator sets in
/// `OTEL_RESOURCE_ATTRIBUTES` is that name, in the events too.
pub fn host_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        if let Some(name) =
            host_name_set(&std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default())
        {
            return name;
        }
        let node = std::env::var("K8S_NODE_NAME").ok();
        let own_uts = namespace_id("/proc/self/ns/uts");
        let init_uts = namespace_id("/proc/1/ns/uts");
        let choice = choose_host_name(
            node.as_deref(),
            own_uts.as_deref(),
            init_uts.as_deref(),
            &nodename().unwrap_or_default(),
            init_nodename,
        );
        if let Some(why) = &choice.fallback {
            debug!(
                host.name = %choice.name,
                "host.name is the agent's own host name, not PID 1's: {why}"
            );
        }
        choice.name
    })
}

/// The outcome of [`choose_host_name`].
#[derive(Debug, PartialEq, Eq)]
struct HostNameChoice {
    name: String,
    /// Why the agent's own name was taken when PID 1's may differ.
    fallback: Option<String>,
}

/// The node's name from what the agent sees: `K8S_NODE_NAME` where set;
/// else, in a UTS namespace of its own (a container, or systemd's
/// `ProtectHostname=`), PID 1's host name (`init_name`, asked only then),
/// since the agent's own is a pod name or a container id there; else the
/// agent's own (`own_name`). `own_uts` and `init_uts` are the namespaces'
/// ids (`/proc/self/ns/uts`, `/proc/1/ns/uts`), `None` when unreadable.
fn choose_host_name(
    node: Option<&str>,
    own_uts: Option<&str>,
    init_uts: Option<&str>,
    own_name: &str,
    init_name: impl FnOnce() -> Result<String, String>,
) -> HostNameChoice {
    if let Some(node) = node.map(str::trim).filter(|n| !n.is_empty()) {
        return HostNameChoice {
            name: node.to_string(),
            fallback: None,
        };
    }
    let own = |why: Option<String>| HostNameChoice {
        name: own_name.to_string(),
        fallback: why,
    };
    match (own_uts, init_uts) {
        (Some(own_uts), Some(init_uts)) if own_uts == init_uts => own(None),
        (Some(_), Some(_)) => match init_name() {
            Ok(name) if !name.trim().is_empty() => HostNameChoice {
                name: name.trim().to_string(),
                fallback: None,
            },
            Ok(_) => own(Some("PID 1's host name is empty".into())),
            Err(e) => own(Some(e)),
        },
        (None, _) => own(Some(
            "/proc/self/ns/uts is unreadable, so the agent cannot tell whether it shares PID 1's UTS namespace".into(),
        )),
        (_, None) => own(Some(
            "/proc/1/ns/uts is unreadable (CAP_SYS_PTRACE?), so the agent cannot tell whether it shares PID 1's UTS namespace".into(),
        )),
    }
}

/// A namespace's id as the kernel shows it (`uts:[4026531838]`).
fn namespace_id(path: &str) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|id| id.to_string_lossy().into_owned())
}

/// The host name in the calling thread's UTS namespace.
fn nodename() -> Result<String, String> {
    // SAFETY: utsname is plain bytes; all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel NUL-terminates nodename within the array.
    let name = unsafe { CStr::from_ptr(uts.nodename.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The host name in PID 1's UTS namespace. setns moves only the calling
/// thread, so a thread of its own joins the namespace, reads the name and
/// ends; the agent's other threads stay where they are. Needs
/// CAP_SYS_ADMIN.
fn init_nodename() -> Result<String, String> {
    std::thread::Builder::new()
        .name("uts-of-pid-1".into())
        .spawn(|| {
            let ns = std::fs::File::open("/proc/1/ns/uts")
                .map_err(|e| format!("cannot open /proc/1/ns/uts: {e}"))?;
            // SAFETY: a descriptor of a UTS namespace; only this thread
            // joins it.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
                return Err(format!(
                    "cannot join PID 1's UTS namespace (CAP_SYS_ADMIN?): {}",
                    std::io::Error::last_os_error()
                ));
            }
            nodename()
        })
        .map_err(|e| format!("cannot start a thread to read PID 1's host name: {e}"))?
        .join()
        .map_err(|_| "the thread reading PID 1's host name panicked".to_string())?
}

/// The first non-empty machine id of `candidates`.
fn machine_id(candidates: &[&Path]) -> Option<String> {
    candidates.iter().find_map(|path| {
        let id = std::fs::read_to_string(path).ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
}

/// The SDK's version as the SDK itself reports it, so it follows the
/// opentelemetry_sdk in Cargo.lock.
fn sdk_version() -> Option<String> {
    TelemetryResourceDetector
        .detect()
        .get(&Key::from_static_str(attr::TELEMETRY_SDK_VERSION))
        .map(|v| v.to_string())
}

/// `host.arch` for a Rust target architecture (`std::env::consts::ARCH`):
/// the semantic conventions' name for it, where they have one.
fn host_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "x86" => "x86",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// A random (version 4) UUID, `8-4-4-4-12` lowercase hex.
fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `key1=value1,key2=value2`, values percent-encoded, as the
/// specification has it (the SDK's own detector does not decode them).
/// The `host.name` an `OTEL_RESOURCE_ATTRIBUTES` list sets (the last, as
/// the Resource takes it), unless empty.
fn host_name_set(list: &str) -> Option<String> {
    from_env(list)
        .into_iter()
        .rev()
        .find(|kv| kv.key.as_str() == attr::HOST_NAME)
        .map(|kv| kv.value.to_string())
        .filter(|name| !name.trim().is_empty())
}

fn from_env(list: &str) -> Vec<KeyValue> {
    list.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| {
                KeyValue::new(
                    k.to_string(),
                    percent_encoding::percent_decode_str(v.trim())
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
        })
        .collect()
}

/// The same Resource as the logs and traces requests carry it.
pub fn to_proto(resource: &Resource) -> ProtoResource {
    let mut attributes: Vec<ProtoKeyValue> = resource
        .iter()
        .map(|(k, v)| ProtoKeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(match v {
                    opentelemetry::Value::Bool(b) => any_value::Value::BoolValue(*b),
                    opentelemetry::Value::I64(i) => any_value::Value::IntValue(*i),
                    opentelemetry::Value::F64(f) => any_value::Value::DoubleValue(*f),
                    other => any_value::Value::StringValue(other.to_string()),
                }),
            }),
            ..Default::default()
        })
        .collect();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    ProtoResource {
        attributes,
        ..Default::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(r: &ProtoResource, k: &str) -> Option<any_value::Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    }

    fn string(r: &ProtoResource, k: &str) -> Option<String> {
        match get(r, k) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            other => panic!("{k}: want a string, got {other:?}"),
        }
    }

    /// Keys whoever runs the tests set through `OTEL_RESOURCE_ATTRIBUTES`,
    /// which rightly win over what the agent finds.
    fn overridden(k: &str) -> bool {
        from_env(&std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default())
            .iter()
            .any(|kv| kv.key.as_str() == k)
    }

    #[test]
    fn otel_resource_attributes_are_parsed_and_decoded() {
        let kv = from_env("a=1, team = blue%20green ,broken,=x");
        assert_eq!(kv.len(), 2);
        assert_eq!(kv[1].key.as_str(), "team");
        assert_eq!(kv[1].value.as_str(), "blue green");
    }

    #[test]
    fn the_resource_names_the_agent_and_the_host() {
        let r = to_proto(&resource());
        // OTEL_SERVICE_NAME may be set by whoever runs the tests.
        if std::env::var("OTEL_SERVICE_NAME").is_err() && !overridden(attr::SERVICE_NAME) {
            assert_eq!(
                get(&r, attr::SERVICE_NAME),
                Some(any_value::Value::StringValue("safeguard".into()))
            );
        }
        assert_eq!(
            get(&r, attr::OS_TYPE),
            Some(any_value::Value::StringValue("linux".into()))
        );
        assert!(get(&r, attr::SERVICE_VERSION).is_some());
        if !overridden(attr::HOST_NAME) {
            // The events carry the same name, so logs, spans and metrics
            // of one node agree.
            assert_eq!(string(&r, attr::HOST_NAME).as_deref(), Some(host_name()));
            if let Ok(node) = std::env::var("K8S_NODE_NAME")
                && !node.trim().is_empty()
            {
                assert_eq!(host_name(), node.trim());
            }
        }
        if let Some(id) = string(&r, attr::HOST_ID).filter(|_| !overridden(attr::HOST_ID)) {
            assert!(
                !id.is_empty() && !id.contains(char::is_whitespace),
                "{id:?}"
            );
        }
    }

    #[test]
    fn the_resource_names_the_telemetry_sdk_as_locked() {
        let r = to_proto(&resource());
        let lock =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"))
                .unwrap();
        let mut lines = lock.lines();
        lines
            .find(|l| *l == "name = \"opentelemetry_sdk\"")
            .expect("opentelemetry_sdk in Cargo.lock");
        let locked = lines
            .next()
            .and_then(|l| l.strip_prefix("version = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("its version on the next line");

        assert_eq!(
            string(&r, attr::TELEMETRY_SDK_NAME).as_deref(),
            Some("opentelemetry")
        );
        assert_eq!(
            string(&r, attr::TELEMETRY_SDK_LANGUAGE).as_deref(),
            Some("rust")
        );
        assert_eq!(
            string(&r, attr::TELEMETRY_SDK_VERSION).as_deref(),
            Some(locked)
        );
    }

    #[test]
    fn the_resource_names_the_kernel_release_and_the_architecture() {
        let r = to_proto(&resource());
        // What `uname -r` prints.
        // SAFETY: utsname is plain bytes; all zeroes is a valid value.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a utsname.
        assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
        // SAFETY: NUL-terminated by the kernel.
        let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
        if !overridden(attr::OS_VERSION) {
            assert_eq!(
                string(&r, attr::OS_VERSION).as_deref(),
                Some(release.as_ref())
            );
        }

        let arch = string(&r, attr::HOST_ARCH);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch.as_deref(), Some("amd64"));
        } else if cfg!(target_arch = "aarch64") {
            assert_eq!(arch.as_deref(), Some("arm64"));
        } else {
            assert!(arch.is_some_and(|a| !a.is_empty()));
        }
    }

    #[test]
    fn host_arch_takes_the_semantic_conventions_names() {
        assert_eq!(host_arch("x86_64"), "amd64");
        assert_eq!(host_arch("aarch64"), "arm64");
        assert_eq!(host_arch("arm"), "arm32");
        assert_eq!(host_arch("x86"), "x86");
        assert_eq!(host_arch("powerpc64"), "ppc64");
        assert_eq!(host_arch("s390x"), "s390x");
        // No name in the conventions: Rust's.
        assert_eq!(host_arch("riscv64"), "riscv64");
    }

    /// `8-4-4-4-12` lowercase hex digits, version 4, RFC 4122 variant.
    fn assert_uuid_v4(id: &str) {
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            groups
                .iter()
                .all(|g| g.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))),
            "{id}"
        );
        assert!(groups[2].starts_with('4'), "version: {id}");
        assert!(groups[3].starts_with(['8', '9', 'a', 'b']), "variant: {id}");
    }

    #[test]
    fn service_instance_id_is_a_new_random_uuid_each_start() {
        if overridden(attr::SERVICE_INSTANCE_ID) {
            return;
        }
        let first = string(&to_proto(&resource()), attr::SERVICE_INSTANCE_ID).unwrap();
        let second = string(&to_proto(&resource()), attr::SERVICE_INSTANCE_ID).unwrap();
        assert_uuid_v4(&first);
        assert_uuid_v4(&second);
        assert_ne!(first, second);
    }

    #[test]
    fn a_uuid_has_its_version_and_variant_whatever_the_random_bytes() {
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
        assert_eq!(uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(
            uuid_v4(core::array::from_fn(|i| i as u8 * 17)),
            "00112233-4455-4677-8899-aabbccddeeff"
        );
    }

    const HOST_UTS: Option<&str> = Some("uts:[4026531838]");
    const CONTAINER_UTS: Option<&str> = Some("uts:[4026532301]");

    fn not_asked() -> Result<String, String> {
        panic!("PID 1's host name is not needed here")
    }

    fn chosen(name: &str) -> HostNameChoice {
        HostNameChoice {
            name: name.into(),
            fallback: None,
        }
    }

    #[test]
    fn host_name_is_the_kubernetes_node_where_the_daemonset_sets_it() {
        assert_eq!(
            choose_host_name(
                Some("node-1"),
                CONTAINER_UTS,
                HOST_UTS,
                "safeguard-x7k2p",
                not_asked
            ),
            chosen("node-1")
        );
        // Blank is unset.
        assert_eq!(
            choose_host_name(Some(" "), HOST_UTS, HOST_UTS, "node-1", not_asked),
            chosen("node-1")
        );
    }

    #[test]
    fn a_host_name_set_in_otel_resource_attributes_is_the_events_too() {
        assert_eq!(
            host_name_set("deployment.environment.name=prod,host.name=edge%2D7").as_deref(),
            Some("edge-7")
        );
        assert_eq!(
            host_name_set("host.name=a,host.name=b").as_deref(),
            Some("b"),
            "the last one, as the Resource keeps it"
        );
        assert_eq!(host_name_set("host.name= ,service.version=1"), None);
        assert_eq!(host_name_set(""), None);
    }

    #[test]
    fn host_name_in_a_container_is_pid_1s() {
        assert_eq!(
            choose_host_name(None, CONTAINER_UTS, HOST_UTS, "3f2a9c1b7d4e", || Ok(
                "node-1\n".into()
            )),
            chosen("node-1")
        );
    }

    #[test]
    fn host_name_in_the_hosts_uts_namespace_is_the_agents_own() {
        assert_eq!(
            choose_host_name(None, HOST_UTS, HOST_UTS, "node-1", not_asked),
            chosen("node-1")
        );
    }

    #[test]
    fn host_name_falls_back_to_the_agents_own_and_says_why() {
        let denied = choose_host_name(None, CONTAINER_UTS, HOST_UTS, "node-1", || {
            Err(
                "cannot join PID 1's UTS namespace (CAP_SYS_ADMIN?): Operation not permitted"
                    .into(),
            )
        });
        assert_eq!(denied.name, "node-1");
        assert!(
            denied
                .fallback
                .is_some_and(|why| why.contains("Operation not permitted"))
        );

        let empty = choose_host_name(None, CONTAINER_UTS, HOST_UTS, "node-1", || Ok("".into()));
        assert_eq!(empty.name, "node-1");
        assert!(empty.fallback.is_some());

        // PID 1's namespace hidden: the agent cannot tell, and does not
        // try to join it.
        let unknown = choose_host_name(None, CONTAINER_UTS, None, "node-1", not_asked);
        assert_eq!(unknown.name, "node-1");
        assert!(
            unknown
                .fallback
                .is_some_and(|why| why.contains("/proc/1/ns/uts"))
        );
    }

    #[test]
    fn host_id_is_the_first_non_empty_machine_id() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node-machine-id");
        let image = dir.path().join("image-machine-id");
        let missing = dir.path().join("missing");
        std::fs::write(&image, "image0123\n").unwrap();

        assert_eq!(
            machine_id(&[&missing, &image]).as_deref(),
            Some("image0123")
        );
        // An image's empty machine-id (systemd's "not yet set") is no id.
        std::fs::write(&node, "\n").unwrap();
        assert_eq!(machine_id(&[&node, &image]).as_deref(), Some("image0123"));
        std::fs::write(&node, "node4567\n").unwrap();
        assert_eq!(machine_id(&[&node, &image]).as_deref(), Some("node4567"));
        assert_eq!(machine_id(&[&missing]), None);
    }
}
