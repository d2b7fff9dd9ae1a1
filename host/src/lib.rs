//! provision: stand up whole development, test and CI environments from one
//! stack.toml. The modules are the steps of the data path, in order:
//!
//! ```text
//! stack.toml ─► stack      typed model with spans, so errors point at a line and key
//!            ─► plan       resolve (provision_registry) → runtime (sandboxed plugins)
//!                          → wire (roles) → policy → build contexts
//!            ─► desired    the desired state, in the host's own types
//!            ─► reconcile  labels, engine names, spec hashes, diff against the engine
//!            ─► apply      schedule → lifecycle → readiness, reporting events
//!            ─► engine     the `Engine` trait; Docker (bollard) behind it
//!            ─► ui         plan summaries, progress, tables
//! ```
//!
//! `cli` holds one small module per command, each calling into this path;
//! `author` is the plugin author's kit; `secrets` derives per-project secrets;
//! `import` reads a Compose project into a stack.toml; `journal` records how far each container's lifecycle got; `ephemeral`
//! marks what `run` makes with its owner, for `gc`.
//! To follow `provision up`: cli/up.rs → cli/mod.rs (`prepare`) → plan/mod.rs
//! → apply/mod.rs → apply/schedule.rs → apply/lifecycle.rs and
//! apply/readiness.rs → engine/docker.rs.

pub mod apply;
pub mod author;
pub mod cli;
pub mod desired;
pub mod engine;
pub mod ephemeral;
pub mod export;
pub mod import;
pub mod journal;
pub mod plan;
pub mod reconcile;
pub mod runtime;
pub mod secrets;
pub mod snapshot;
pub mod stack;
pub mod ui;
pub mod writer;
