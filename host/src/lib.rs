//! provision: stand up whole development, test and CI environments from one
//! stack.toml. The modules follow the data path:
//!
//! ```text
//! stack.toml ─► stack ─► (registry: resolve) ─► runtime ─► plan ─► desired ─► policy ─► ui
//! ```

pub mod desired;
pub mod plan;
pub mod policy;
pub mod runtime;
pub mod secrets;
pub mod stack;
pub mod ui;
pub mod engine;
pub mod apply;
pub mod author;
pub mod build_context;
