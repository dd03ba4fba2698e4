//! The wire shapes: a backfill and a pipeline run as JSON, in Mage's keys and order, built
//! from the domain's records without copying them. The API answers them and `export` writes
//! them (and `import` reads them back), so that both speak one format.
//!
//! Serialization only: no HTTP, no SQL, no parsing of requests (the API and `import` check
//! what comes in).

mod backfill;
mod pipeline_run;

pub use backfill::BackfillJson;
pub use pipeline_run::PipelineRunJson;
