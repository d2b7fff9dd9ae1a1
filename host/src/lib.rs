//! provision: stand up whole development, test and CI environments from one
//! stack.toml. The modules are the steps of the data path, in order:
//!
//! ```text
//! stack.toml ─► stack      typed model with spans (errors point at a line and key);
//!                          profiles, interpolation, service options, permissions
//!            ─► plan       resolve (provision_registry) → runtime (sandboxed plugins)
//!                          → wire (roles) → policy → options → build contexts
//!            ─► desired    the desired state in the host's own types; replicas a count
//!            ─► reconcile  labels, engine names, spec hashes, the diff against the engine
//!            ─► apply      schedule → lifecycle → readiness (snapshots, hooks, tasks);
//!                          `hop` resolves a container into the engine's one spec
//!            ─► engine     the `Engine` trait; Docker (bollard) and Swarm behind it
//! ```
//!
//! Beside the path: `cli` holds one small module per command, each calling
//! into it, and `ui` renders what they report (plan summaries, progress
//! from apply's events, tables); `import` reads a Compose project into a
//! stack.toml and `export` writes a plan as one; `snapshot` keys, seals and
//! keeps data snapshots; `journal` records how far each container's
//! lifecycle got; `ephemeral` marks what `run` makes with its owner, for
//! `gc`; `secrets` derives per-project secrets; `writer` is the project lock
//! (one writer at a time); `author` is the plugin author's kit; `watch`
//! turns file events into each service's work by its watch rules; `unpack`
//! writes what `cp` copies out of a container, trusting none of it.
//! The README's Layout follows `provision up` from the command to the engine.

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
pub mod unpack;
pub mod watch;
pub mod writer;
