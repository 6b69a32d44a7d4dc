//! The Resource every signal carries: who is reporting.

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value},
    resource::v1::Resource as ProtoResource,
};
use opentelemetry_sdk::Resource;
use rand::Rng as _;
use semconv::attr;

/// `service.*`, `host.*`, `os.type` and, on Kubernetes, `k8s.node.name`
/// (from `K8S_NODE_NAME`, which the DaemonSet fills from the downward API);
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` override them.
pub fn resource() -> Resource {
    let instance: [u8; 16] = rand::rng().random();
    let mut attributes = vec![
        KeyValue::new(attr::SERVICE_NAME, "safeguard"),
        KeyValue::new(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        KeyValue::new(attr::SERVICE_INSTANCE_ID, hex(&instance)),
        KeyValue::new(attr::HOST_NAME, crate::events::enrich::host_name()),
        KeyValue::new(attr::OS_TYPE, "linux"),
    ];
    // systemd's machine id is what the semantic conventions name as host.id
    // outside a cloud.
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id")
        && !id.trim().is_empty()
    {
        attributes.push(KeyValue::new(attr::HOST_ID, id.trim().to_string()));
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

/// `key1=value1,key2=value2`, values percent-encoded, as the
/// specification has it (the SDK's own detector does not decode them).
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
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        // OTEL_SERVICE_NAME may be set by whoever runs the tests.
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            assert_eq!(
                get(attr::SERVICE_NAME),
                Some(any_value::Value::StringValue("safeguard".into()))
            );
        }
        assert_eq!(
            get(attr::OS_TYPE),
            Some(any_value::Value::StringValue("linux".into()))
        );
        assert!(get(attr::SERVICE_VERSION).is_some());
        assert!(get(attr::HOST_NAME).is_some());
        assert!(get(attr::SERVICE_INSTANCE_ID).is_some());
    }
}
