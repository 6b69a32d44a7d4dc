//! An enriched audit event, independent of where it goes: a name, a time, a
//! severity and semantic-convention attributes. Outputs only serialise it.

use std::{ops::Deref, sync::Arc, time::SystemTime};

/// Text in a record. Most values come from fixed sets (decisions, hooks,
/// modules) or are shared by many events (the host, an executable's path),
/// so they are borrowed or shared rather than allocated per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

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
    Str(Text),
    Int(i64),
    Bool(bool),
    List(Vec<Text>),
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::List(v.into_iter().map(Text::Owned).collect())
    }
}
impl From<Vec<&'static str>> for Value {
    fn from(v: Vec<&'static str>) -> Self {
        Value::List(v.into_iter().map(Text::Static).collect())
    }
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Value::Str(Text::Static(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(Text::Owned(v))
    }
}
impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Self {
        Value::Str(Text::Shared(v))
    }
}
impl From<Text> for Value {
    fn from(v: Text) -> Self {
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
pub struct Enriched {
    /// The event name (OTLP `EventName`), from `semconv::event`.
    pub name: &'static str,
    pub time: SystemTime,
    pub severity: Severity,
    /// Keys from `semconv::attr`.
    pub attributes: Vec<(&'static str, Value)>,
}

impl Enriched {
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
