//! What `up` reports as it goes: one event per step of a service, for the
//! live progress or `--json`. Must not print: the ui renders events.

use serde::Serialize;

/// What `up` reports as it goes.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub service: String,
    #[serde(flatten)]
    pub phase: Phase,
    /// Since `up` began.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "phase", content = "detail", rename_all = "kebab-case")]
pub enum Phase {
    Waiting(String),
    /// A line of image build output.
    Building(String),
    Task(String),
    Creating(String),
    Starting,
    Probing(String),
    Hook(String),
    /// Its data's snapshot: seeded from one, keeping one, or why not.
    Snapshot(String),
    Ready,
    Kept,
    Failed(String),
}

pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}
