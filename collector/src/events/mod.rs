//! Kernel records → typed events ([`Event`]) → enriched events ([`Enriched`]).
//!
//! `reader` drains the ring buffer and decodes; `enrich` adds what the
//! kernel did not know (wall-clock time, executable, resolved paths, the
//! rule as written, the container).

pub mod container;
pub mod decode;
pub mod enrich;
pub mod enriched;
pub mod exe;
pub mod image;
pub mod reader;
pub mod recording;

pub use decode::Event;
pub use enriched::Enriched;
