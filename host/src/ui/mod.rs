//! What the user sees. Owns formatting only: `plan` (summary, JSON, diff,
//! timings), `progress` (live progress and JSON events of `up`), `table`
//! (`ps`), and masking secrets in all of it. Must not decide or fetch
//! anything.

pub mod plan;
pub mod progress;
pub mod table;

use crate::{desired::DesiredState, secrets::Secrets};

/// Hides secrets in everything printed, unless the user asked to see them.
pub struct Masker<'a> {
    values: Vec<String>,
    secrets: Option<&'a Secrets>,
}

impl<'a> Masker<'a> {
    pub fn new(state: &DesiredState, secrets: &'a Secrets, show: bool) -> Self {
        if show {
            return Masker { values: Vec::new(), secrets: None };
        }
        // Secret outputs the user wrote themselves (not generated) too.
        let values =
            state.services.iter().flat_map(|s| &s.plan.outputs).filter(|o| o.secret && o.value.len() >= 4).map(|o| o.value.clone()).collect();
        Masker { values, secrets: Some(secrets) }
    }

    pub fn mask(&self, text: &str) -> String {
        let Some(secrets) = self.secrets else { return text.to_string() };
        let text = secrets.mask(text);
        self.values.iter().fold(text, |t, v| t.replace(v.as_str(), "••••••"))
    }
}
