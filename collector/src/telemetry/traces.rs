//! Process trees as traces: a process's life is a span, its parent
//! process's span is its parent, and a tree of processes is one trace. Audit
//! events ride on the span of the process that caused them as span events,
//! and each log record carries that span's ids.
//!
//! A span is exported when its process exits (or, if no exit is seen, when
//! the process is found gone, or when the agent stops: then it is marked
//! unfinished). A process the agent first meets after it started (it was
//! running before the agent) gets a span from the first event seen.

use std::time::SystemTime;

use opentelemetry_proto::tonic::{common::v1::InstrumentationScope, resource::v1::Resource};
use rand::Rng as _;
use rustc_hash::FxHashMap;
use semconv::{attr, decision, event};

use super::{
    encode::{self, SpanBatch, SpanFields},
    logs::unix_nanos,
};
use crate::events::{Enriched, enriched::Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// How many processes may have an open span at once; beyond, new processes
/// get none (their records carry no trace context) until some end.
const MAX_LIVE: usize = 65_536;
/// Span events kept per span; more are counted as dropped.
const MAX_EVENTS: usize = 128;
/// A span whose process has not been heard of for this long (in the
/// records' time) is checked against /proc by [`Tracker::sweep`].
const QUIET_NANOS: u64 = 30_000_000_000;

/// A process span while its process runs: attributes as the records hold
/// them, events already encoded.
struct ProcessSpan {
    ctx: SpanContext,
    parent: Option<[u8; 8]>,
    start_unix_nano: u64,
    name: String,
    attributes: Vec<(&'static str, Value)>,
    /// `Span.events` fields (protobuf).
    events: Vec<u8>,
    event_count: usize,
    dropped_events: u32,
    /// Operations the policy denied (blocked or would block).
    denied: i64,
    /// Operations the kernel refused.
    refused: i64,
    /// Time of the last record about the process (Unix ns).
    last_seen: u64,
}

/// Attributes of a process span, set from the records about it.
const SPAN_ATTRIBUTES: &[&str] = &[
    attr::CONTAINER_ID,
    attr::CONTAINER_RUNTIME_NAME,
    attr::CONTAINER_IMAGE_NAME,
    attr::K8S_POD_UID,
    attr::PROCESS_PID,
    attr::PROCESS_PARENT_PID,
    attr::PROCESS_COMM,
    attr::PROCESS_EXECUTABLE_NAME,
    attr::PROCESS_EXECUTABLE_PATH,
    attr::PROCESS_USER_ID,
    attr::PROCESS_REAL_USER_ID,
    attr::PROCESS_GROUP_ID,
    attr::CGROUP_ID,
    attr::PROCESS_IN_CONTAINER,
];

/// Attributes of a span event: what tells the operation apart. The log
/// record with the same sequence number, linked to the span by its trace
/// and span id, has the rest; copying every attribute into the span too
/// was most of the pipeline's allocations.
const SPAN_EVENT_ATTRIBUTES: &[&str] = &[
    attr::SEQUENCE,
    attr::DECISION,
    attr::FILE_PATH,
    attr::FILE_NEW_PATH,
    attr::NETWORK_PEER_ADDRESS,
    attr::NETWORK_PEER_PORT,
    attr::NETWORK_LOCAL_ADDRESS,
    attr::NETWORK_LOCAL_PORT,
    attr::MOUNT_SOURCE,
    attr::MOUNT_TARGET,
    attr::PROCESS_COMMAND_ARGS,
    attr::PROCESS_EXIT_CODE,
    attr::PROCESS_EXIT_SIGNAL,
    attr::SECURITY_RULE_NAME,
];

/// The process spans: one open span per live process (by pid, at most
/// `MAX_LIVE`), and the spans that ended since the last batch, already
/// encoded. Owned by the [`Pipeline`](super::Pipeline), which shows it every
/// record ([`Tracker::observe`]) and seals the ended spans into the spool
/// with its log batches. A span's parent is its parent process's span and
/// shares its trace id; a span is ended once (at exit, when its process is
/// found gone, or unfinished at stop) and then only sent.
pub struct Tracker {
    live: FxHashMap<u32, ProcessSpan>,
    ended: SpanBatch,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            live: FxHashMap::default(),
            ended: SpanBatch::default(),
        }
    }

    /// Updates the process spans with `record` and returns the span the
    /// record belongs to.
    pub fn observe(&mut self, record: &Enriched) -> Option<SpanContext> {
        let pid = u32::try_from(record.int(attr::PROCESS_PID)?).ok()?;
        let ppid = record
            .int(attr::PROCESS_PARENT_PID)
            .and_then(|p| u32::try_from(p).ok());
        let time = unix_nanos(record.time);
        match record.name {
            event::PROCESS_FORK => {
                // A pid seen again: the old process is gone.
                if let Some(stale) = self.live.remove(&pid) {
                    self.end(stale, time, false);
                }
                let parent = ppid.and_then(|p| self.span_of(p, None, record));
                let ctx = self.open(pid, parent, time, record)?;
                Some(ctx)
            }
            event::PROCESS_EXIT => {
                let ctx = self.span_of(pid, ppid, record)?;
                let mut span = self.live.remove(&pid)?;
                set_attributes(&mut span, record);
                for key in [attr::PROCESS_EXIT_CODE, attr::PROCESS_EXIT_SIGNAL] {
                    if let Some(v) = record.get(key) {
                        span.attributes.push((key, v.clone()));
                    }
                }
                self.end(span, time, false);
                Some(ctx)
            }
            _ => {
                let ctx = self.span_of(pid, ppid, record)?;
                let span = self.live.get_mut(&pid)?;
                span.last_seen = time;
                if record.name == event::PROCESS_EXEC
                    && record.str(attr::DECISION) != Some(decision::BLOCKED)
                {
                    // The process now runs the new program.
                    if let Some(path) = record.str(attr::PROCESS_EXECUTABLE_PATH) {
                        span.name = basename(path).to_string();
                    }
                    set_attributes(span, record);
                    if let Some(args) = record.get(attr::PROCESS_COMMAND_ARGS) {
                        set(&mut span.attributes, attr::PROCESS_COMMAND_ARGS, args);
                    }
                }
                add_event(span, record, time);
                Some(ctx)
            }
        }
    }

    /// The span of `pid`, opened from `record` if there is none yet (a
    /// process that was running before the agent, or whose fork was not
    /// seen); it is a child of `ppid`'s span when that one is known.
    fn span_of(&mut self, pid: u32, ppid: Option<u32>, record: &Enriched) -> Option<SpanContext> {
        if let Some(span) = self.live.get(&pid) {
            return Some(span.ctx);
        }
        let parent = ppid.and_then(|p| self.live.get(&p)).map(|s| s.ctx);
        self.open(pid, parent, unix_nanos(record.time), record)
    }

    fn open(
        &mut self,
        pid: u32,
        parent: Option<SpanContext>,
        start_unix_nano: u64,
        record: &Enriched,
    ) -> Option<SpanContext> {
        if self.live.len() >= MAX_LIVE {
            return None;
        }
        let mut rng = rand::rng();
        let ctx = SpanContext {
            trace_id: parent.map_or_else(|| rng.random(), |p| p.trace_id),
            span_id: rng.random(),
        };
        let mut span = ProcessSpan {
            ctx,
            parent: parent.map(|p| p.span_id),
            start_unix_nano,
            name: opening_name(record).to_string(),
            attributes: Vec::new(),
            events: Vec::new(),
            event_count: 0,
            dropped_events: 0,
            denied: 0,
            refused: 0,
            last_seen: start_unix_nano,
        };
        // The record describes this process, unless it is a fork record
        // opening the span of the parent (the record's pid is the child).
        if record.int(attr::PROCESS_PID) == Some(i64::from(pid)) {
            set_attributes(&mut span, record);
        } else {
            span.attributes.push((attr::PROCESS_PID, Value::from(pid)));
        }
        self.live.insert(pid, span);
        Some(ctx)
    }

    fn end(&mut self, span: ProcessSpan, end_unix_nano: u64, unfinished: bool) {
        let mut attributes = span.attributes;
        if span.denied > 0 {
            attributes.push((attr::PROCESS_BLOCKED_OPERATIONS, Value::Int(span.denied)));
        }
        if unfinished {
            attributes.push((attr::PROCESS_UNFINISHED, Value::Bool(true)));
        }
        let error = (span.refused > 0).then(|| format!("{} operation(s) blocked", span.refused));
        if error.is_some() {
            // A span with status ERROR says which class of error.
            attributes.push((attr::ERROR_TYPE, semconv::error_type::BLOCKED.into()));
        }
        self.ended.push(&SpanFields {
            ctx: span.ctx,
            parent: span.parent,
            name: &span.name,
            start_unix_nano: span.start_unix_nano,
            end_unix_nano: end_unix_nano.max(span.start_unix_nano),
            attributes: &attributes,
            events: &span.events,
            dropped_events: span.dropped_events,
            error: error.as_deref(),
        });
    }

    /// Spans ended and not yet sealed.
    pub fn ended(&self) -> usize {
        self.ended.len()
    }

    /// The export request for the spans ended since the last call.
    pub fn seal_ended(&mut self, resource: &Resource, scope: &InstrumentationScope) -> Vec<u8> {
        self.ended.seal(resource, scope)
    }

    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Ends the spans of processes that are gone although no exit was seen
    /// (no process module, or a dropped exit event): quiet for a while and
    /// `alive` says no.
    pub fn sweep(&mut self, now: SystemTime, alive: impl Fn(u32) -> bool) {
        let now_nanos = unix_nanos(now);
        let gone: Vec<u32> = self
            .live
            .iter()
            .filter(|(pid, s)| {
                now_nanos.saturating_sub(s.last_seen) >= QUIET_NANOS && !alive(**pid)
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            if let Some(span) = self.live.remove(&pid) {
                self.end(span, unix_nanos(now), false);
            }
        }
    }

    /// Ends every open span at `now`, marked unfinished: the agent is
    /// stopping while these processes still run.
    pub fn end_all(&mut self, now: SystemTime) {
        let live: Vec<ProcessSpan> = self.live.drain().map(|(_, s)| s).collect();
        for span in live {
            self.end(span, unix_nanos(now), true);
        }
    }
}

/// The name of a span opened from `record`: what the task calls itself
/// (`comm`), until an exec names the program it runs.
fn opening_name(record: &Enriched) -> &str {
    record.str(attr::PROCESS_COMM).unwrap_or("process")
}

fn basename(path: &str) -> &str {
    path.rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or(path)
}

fn set_attributes(span: &mut ProcessSpan, record: &Enriched) {
    for key in SPAN_ATTRIBUTES {
        if let Some(v) = record.get(key) {
            set(&mut span.attributes, key, v);
        }
    }
}

/// Sets `key` to `value`, in place if it is there already.
fn set(attributes: &mut Vec<(&'static str, Value)>, key: &'static str, value: &Value) {
    match attributes.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => {
            if v != value {
                *v = value.clone();
            }
        }
        None => attributes.push((key, value.clone())),
    }
}

fn add_event(span: &mut ProcessSpan, record: &Enriched, time: u64) {
    match record.str(attr::DECISION) {
        Some(decision::BLOCKED) => {
            span.denied += 1;
            span.refused += 1;
        }
        Some(decision::WOULD_BLOCK) => span.denied += 1,
        _ => {}
    }
    if span.event_count >= MAX_EVENTS {
        span.dropped_events += 1;
        return;
    }
    span.event_count += 1;
    encode::span_event(
        &mut span.events,
        time,
        record.name,
        record
            .attributes
            .iter()
            .filter(|(k, _)| SPAN_EVENT_ATTRIBUTES.contains(k)),
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{KeyValue, any_value},
        trace::v1::{Span, status},
    };
    use prost::Message as _;

    use super::*;
    use crate::events::enriched::Severity;

    /// The spans ended so far, as a Collector decodes them.
    fn take_ended(t: &mut Tracker) -> Vec<Span> {
        let n = t.ended();
        let request = t.seal_ended(&Resource::default(), &InstrumentationScope::default());
        assert_eq!(t.ended(), 0);
        let spans: Vec<Span> = ExportTraceServiceRequest::decode(request.as_slice())
            .unwrap()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect();
        assert_eq!(spans.len(), n);
        spans
    }

    fn rec(name: &'static str, t: u64, attrs: Vec<(&'static str, Value)>) -> Enriched {
        Enriched {
            name,
            time: UNIX_EPOCH + Duration::from_secs(t),
            severity: Severity::Info,
            attributes: attrs,
        }
    }

    fn fork(t: u64, child: u32, parent: u32) -> Enriched {
        rec(
            event::PROCESS_FORK,
            t,
            vec![
                (attr::PROCESS_PID, child.into()),
                (attr::PROCESS_PARENT_PID, parent.into()),
                (attr::PROCESS_COMM, "sh".into()),
            ],
        )
    }

    fn exit(t: u64, pid: u32) -> Enriched {
        rec(
            event::PROCESS_EXIT,
            t,
            vec![
                (attr::PROCESS_PID, pid.into()),
                (attr::PROCESS_EXIT_CODE, 0.into()),
            ],
        )
    }

    fn attr_of<'a>(s: &'a Span, key: &str) -> Option<&'a KeyValue> {
        s.attributes.iter().find(|kv| kv.key == key)
    }

    #[test]
    fn a_process_tree_is_one_trace_with_parent_links() {
        let mut t = Tracker::new();
        // 100 was running before the agent; it forks 200, which forks 300.
        let a = t.observe(&fork(10, 200, 100)).unwrap();
        let b = t.observe(&fork(11, 300, 200)).unwrap();
        let exec = rec(
            event::PROCESS_EXEC,
            12,
            vec![
                (attr::PROCESS_PID, 300u32.into()),
                (attr::DECISION, decision::ALLOWED.into()),
                (attr::PROCESS_EXECUTABLE_PATH, "/usr/bin/cat".into()),
                (
                    attr::PROCESS_COMMAND_ARGS,
                    vec!["cat", "/etc/shadow"].into(),
                ),
            ],
        );
        assert_eq!(t.observe(&exec), Some(b));
        let open = rec(
            event::FILE_OPEN,
            13,
            vec![
                (attr::PROCESS_PID, 300u32.into()),
                (attr::THREAD_TID, 300u32.into()),
                (attr::DECISION, decision::BLOCKED.into()),
                (attr::FILE_PATH, "/etc/shadow".into()),
            ],
        );
        assert_eq!(
            t.observe(&open),
            Some(b),
            "an event links to its process's span"
        );
        t.observe(&exit(14, 300));
        t.observe(&exit(15, 200));
        let ended = take_ended(&mut t);
        assert_eq!(ended.len(), 2);
        let (cat, sh) = (&ended[0], &ended[1]);
        assert_eq!(cat.name, "cat");
        assert_eq!(cat.trace_id, a.trace_id.to_vec(), "one trace for the tree");
        assert_eq!(cat.parent_span_id, a.span_id.to_vec());
        assert_eq!(sh.span_id, a.span_id.to_vec());
        assert_eq!(cat.start_time_unix_nano, 11_000_000_000);
        assert_eq!(cat.end_time_unix_nano, 14_000_000_000);
        assert_eq!(cat.events.len(), 2, "exec and open");
        assert_eq!(cat.events[1].name, event::FILE_OPEN);
        assert!(
            cat.events[1]
                .attributes
                .iter()
                .any(|kv| kv.key == attr::FILE_PATH)
        );
        assert!(
            !cat.events[1]
                .attributes
                .iter()
                .any(|kv| kv.key == attr::THREAD_TID)
        );
        assert_eq!(
            cat.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(
            attr_of(cat, attr::ERROR_TYPE)
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.clone()),
            Some(any_value::Value::StringValue("blocked".into()))
        );
        assert!(attr_of(sh, attr::ERROR_TYPE).is_none());
        assert!(attr_of(cat, attr::PROCESS_BLOCKED_OPERATIONS).is_some());
        assert!(attr_of(cat, attr::PROCESS_EXIT_CODE).is_some());
        assert!(sh.status.is_none(), "the parent blocked nothing");
        // The pre-existing root (100) is still open; at shutdown it ends
        // unfinished, as the root of the same trace.
        t.end_all(UNIX_EPOCH + Duration::from_secs(20));
        let root = take_ended(&mut t);
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].trace_id, a.trace_id.to_vec());
        assert!(root[0].parent_span_id.is_empty());
        assert_eq!(sh.parent_span_id, root[0].span_id);
        assert!(attr_of(&root[0], attr::PROCESS_UNFINISHED).is_some());
    }

    #[test]
    fn unrelated_processes_get_separate_traces() {
        let mut t = Tracker::new();
        let a = t.observe(&fork(1, 10, 1)).unwrap();
        let b = t.observe(&fork(1, 20, 2)).unwrap();
        assert_ne!(a.trace_id, b.trace_id);
    }

    #[test]
    fn a_refused_exec_keeps_the_old_program_name() {
        let mut t = Tracker::new();
        t.observe(&fork(1, 10, 1));
        let exec = rec(
            event::PROCESS_EXEC,
            2,
            vec![
                (attr::PROCESS_PID, 10u32.into()),
                (attr::DECISION, decision::BLOCKED.into()),
                (attr::PROCESS_EXECUTABLE_PATH, "/usr/bin/nc".into()),
            ],
        );
        t.observe(&exec);
        t.observe(&exit(3, 10));
        let s = &take_ended(&mut t)[0];
        assert_eq!(s.name, "sh");
        assert_eq!(
            s.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
    }

    #[test]
    fn a_span_opens_under_the_tasks_own_name() {
        let mut t = Tracker::new();
        let open = |pid: u32, attrs: Vec<(&'static str, Value)>| {
            let mut all = vec![
                (attr::PROCESS_PID, pid.into()),
                (attr::DECISION, decision::ALLOWED.into()),
            ];
            all.extend(attrs);
            rec(event::FILE_OPEN, 1, all)
        };
        t.observe(&open(
            10,
            vec![
                (attr::PROCESS_COMM, "cat".into()),
                (attr::PROCESS_EXECUTABLE_NAME, "busybox".into()),
                (attr::PROCESS_EXECUTABLE_PATH, "/bin/busybox".into()),
            ],
        ));
        t.observe(&open(20, vec![(attr::PROCESS_COMM, "cat".into())]));
        let refused = rec(
            event::PROCESS_EXEC,
            1,
            vec![
                (attr::PROCESS_PID, 30u32.into()),
                (attr::DECISION, decision::BLOCKED.into()),
                (attr::PROCESS_COMM, "sh".into()),
                (attr::PROCESS_EXECUTABLE_NAME, "nc".into()),
            ],
        );
        t.observe(&refused);
        for pid in [10, 20, 30] {
            t.observe(&exit(2, pid));
        }
        let names: Vec<_> = take_ended(&mut t).into_iter().map(|s| s.name).collect();
        // busybox's applets share one executable: the name they were run
        // by tells them apart.
        assert_eq!(names, ["cat", "cat", "sh"]);
    }

    #[test]
    fn span_events_are_capped_and_the_rest_counted() {
        let mut t = Tracker::new();
        t.observe(&fork(1, 10, 1));
        for i in 0..(MAX_EVENTS + 5) {
            t.observe(&rec(
                event::FILE_OPEN,
                2,
                vec![
                    (attr::PROCESS_PID, 10u32.into()),
                    (attr::SEQUENCE, (i as u64).into()),
                ],
            ));
        }
        t.observe(&exit(3, 10));
        let s = &take_ended(&mut t)[0];
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.dropped_events_count, 5);
    }

    #[test]
    fn sweep_ends_spans_of_vanished_processes_only() {
        let mut t = Tracker::new();
        t.observe(&fork(1, 10, 1));
        t.observe(&fork(1, 11, 1));
        // Heard of 4 s ago: not checked yet.
        t.sweep(UNIX_EPOCH + Duration::from_secs(5), |pid| pid != 10);
        assert_eq!(t.ended(), 0);
        t.sweep(UNIX_EPOCH + Duration::from_secs(31), |pid| pid != 10);
        let ended = take_ended(&mut t);
        assert_eq!(ended.len(), 1);
        assert_eq!(t.live(), 2, "11 and its parent 1 are still open");
        assert!(attr_of(&ended[0], attr::PROCESS_UNFINISHED).is_none());
    }
}
