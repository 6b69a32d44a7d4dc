//! An enriched audit event, independent of where it goes: a name, a time, a
//! severity and semantic-convention attributes. Outputs only serialise it.

use std::time::SystemTime;

/// Severity, on safeguard's scale (DEBUG 10 … CRITICAL 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info = 20,
    /// Denied by the policy, but let through (monitor mode, audit tier).
    Warning = 30,
    /// Refused by the kernel.
    Error = 40,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::List(v)
    }
}
impl From<Vec<&'static str>> for Value {
    fn from(v: Vec<&'static str>) -> Self {
        Value::List(v.into_iter().map(String::from).collect())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u64> for Value {
    // Sequence numbers and cgroup ids fit in i64 (cgroup ids are inode
    // numbers); saturate rather than wrap if one ever does not.
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The event name (OTLP `EventName`), from `semconv::event`.
    pub name: &'static str,
    pub time: SystemTime,
    pub severity: Severity,
    /// Keys from `semconv::attr`.
    pub attributes: Vec<(&'static str, Value)>,
}

impl Record {
    /// The value of attribute `key`, if the record has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find_map(|(k, v)| (*k == key).then_some(v))
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}
