//! The userspace pipeline, stage by stage, on recorded kernel records:
//! decode (ring-buffer bytes → typed events), enrich (→ records with
//! semconv attributes), encode (→ OTLP log records and process spans, and
//! the protobuf bytes of 512-record batches, as the agent spools them), and
//! all three together. Throughput is in records, so criterion prints
//! records per second on one core.
//!
//! The recording (`data/host-audit.rec.gz`) is made on this host's audit
//! tier by `data/record.sh` (root; re-run it after a change of the
//! kernel/userspace ABI): the agent runs with `--record` while Python opens
//! a denied file 4,000 times (a quarter by relative path) and a shell runs
//! `cat` and `sh -c true` 550 times. 7,984 records: 4,550 file opens, 3,434
//! fork/exec/exit (BENCHMARKS.md).
//!
//! `make bench` runs it; alone: `cargo bench -p safeguard --bench pipeline`.

use std::{
    hint::black_box,
    io::Read as _,
    sync::Arc,
    time::{Duration, SystemTime},
};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::{common::v1::InstrumentationScope, resource::v1::Resource};
use safeguard::{
    config::{self, Sources},
    events::{Enriched, Event, decode::decode, enrich::Enricher, recording},
    internal_events::Registry,
    policy::Policy,
    telemetry::{self, encode::LogBatch, resource, traces::Tracker},
};

/// The configuration the recording was made with: rule ids in the records
/// name its rules.
const RECORDED_WITH: &[&str] = &[
    "files.enable=true",
    "files.mode=monitor",
    "files.deny=[/tmp/sgb/deny]",
    "process.enable=true",
    "process.mode=monitor",
    "process.deny=[/tmp/sgb/nothing]",
    "network.enable=false",
    "otel.enable=false",
];

/// `otel.batch_size`'s default.
const BATCH: usize = 512;

fn recorded() -> Vec<Vec<u8>> {
    let path =
        safeguard_test_support::workspace_root().join("collector/benches/data/host-audit.rec.gz");
    let path = path.display();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path.to_string()).expect("the recording"))
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    recording::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn enricher() -> Enricher {
    let sources = Sources {
        file: None,
        overrides: RECORDED_WITH.iter().map(|s| s.to_string()).collect(),
        environment: false,
    };
    let config = config::load(&sources).expect("the recorded configuration is valid");
    Enricher::new(
        Arc::new(Policy::compile(&config)),
        Arc::new(Registry::default()),
    )
}

fn decode_all(raw: &[Vec<u8>]) -> Vec<Event> {
    raw.iter()
        .map(|r| decode(r).expect("recorded records decode (re-record after an ABI change)"))
        .collect()
}

fn enrich_all(enricher: &Enricher, events: Vec<Event>) -> Vec<Enriched> {
    events
        .into_iter()
        .filter_map(|e| enricher.enrich(e))
        .collect()
}

/// What the agent's pipeline does with each record before the spool: the
/// process span, and the record encoded into a batch sealed every 512.
struct Encoder<'a> {
    tracker: &'a mut Tracker,
    resource: &'a Resource,
    scope: InstrumentationScope,
    observed: u64,
    batch: LogBatch,
    /// Bytes of the requests sealed so far.
    bytes: usize,
}

impl<'a> Encoder<'a> {
    fn new(tracker: &'a mut Tracker, resource: &'a Resource) -> Self {
        Self {
            tracker,
            resource,
            scope: telemetry::scope(),
            observed: telemetry::logs::unix_nanos(SystemTime::now()),
            batch: LogBatch::default(),
            bytes: 0,
        }
    }

    fn push(&mut self, record: &Enriched) {
        let span = self.tracker.observe(record);
        self.batch.push(record, self.observed, span);
        if self.batch.len() == BATCH {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if !self.batch.is_empty() {
            self.bytes += self.batch.seal(self.resource, &self.scope).0.len();
        }
        self.bytes += self.tracker.seal_ended(self.resource, &self.scope).len();
    }

    /// Seals what is left; all bytes encoded.
    fn finish(mut self) -> usize {
        self.seal();
        self.bytes
    }
}

fn encode_all(tracker: &mut Tracker, resource: &Resource, records: &[Enriched]) -> usize {
    let mut encoder = Encoder::new(tracker, resource);
    records.iter().for_each(|r| encoder.push(r));
    encoder.finish()
}

/// Each recorded record decoded, enriched and encoded before the next, as
/// the agent's reader and pipeline take them.
fn stream_all(
    enricher: &Enricher,
    tracker: &mut Tracker,
    resource: &Resource,
    raw: &[Vec<u8>],
) -> usize {
    let mut encoder = Encoder::new(tracker, resource);
    for r in raw {
        let event = decode(r).expect("recorded records decode (re-record after an ABI change)");
        if let Some(record) = enricher.enrich(event) {
            encoder.push(&record);
        }
    }
    encoder.finish()
}

fn stages(c: &mut Criterion) {
    let raw = recorded();
    let enricher = enricher();
    let events = decode_all(&raw);
    let records = enrich_all(&enricher, events.clone());
    let resource = resource::to_proto(&resource::resource());
    eprintln!(
        "pipeline: {} recorded records, {} reportable after enrichment",
        raw.len(),
        records.len()
    );

    let mut group = c.benchmark_group("pipeline");
    group.measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(raw.len() as u64));
    group.bench_function("decode", |b| b.iter(|| decode_all(black_box(&raw))));
    group.bench_function("enrich", |b| {
        b.iter_batched(
            || events.clone(),
            |events| enrich_all(&enricher, events),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("encode", |b| {
        b.iter_batched(
            Tracker::new,
            |mut tracker| encode_all(&mut tracker, &resource, black_box(&records)),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(raw.len() as u64));
    // As the agent runs: one record at a time through all three stages.
    group.bench_function("all", |b| {
        b.iter_batched(
            Tracker::new,
            |mut tracker| stream_all(&enricher, &mut tracker, &resource, black_box(&raw)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
