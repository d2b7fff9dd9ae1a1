//! provision's integration tests: one binary, a module per area (the
//! wasmtime layout). Everything runs the real `provision` binary or the real
//! runtime on real compiled components.

mod author;
mod bounds;
mod docker;
mod engine;
mod examples;
mod export;
mod fuzz;
mod host_paths;
mod import;
mod lifecycle;
mod plan;
mod rails;
mod real_stacks;
mod registry;
mod run;
mod sandbox;
mod security;
mod snapshots;
mod stacks;
mod support;
mod swarm;
mod ui;
mod user_wins;
mod watch;
