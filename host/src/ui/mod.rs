//! What the user sees. Owns formatting only: `plan` (summary, JSON, diff,
//! timings), `progress` (live progress and JSON events of `up`), `table`
//! (`ps`), and masking secrets in all of it. Must not decide or fetch
//! anything.

pub mod plan;
pub mod progress;
pub mod table;

use crate::secrets;

/// Hides secrets in what `plan` prints, unless the user asked to see them
/// (`--show-secrets`). Everything else is masked unconditionally.
pub struct Masker {
    show: bool,
}

impl Masker {
    pub fn new(show: bool) -> Self {
        Masker { show }
    }

    pub fn mask(&self, text: &str) -> String {
        if self.show { text.to_string() } else { secrets::redact(text) }
    }
}

pub use crate::engine::plain;

/// "1 container", "2 containers": a count and its noun.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// What is printed for the user: secrets masked, control characters shown.
pub fn printable(text: &str) -> String {
    plain(&secrets::redact(text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_sent() {
        assert_eq!(super::plain("a\u{1b}]52;c;x\u{7}\u{1b}[2Jb\n\tc"), "a\\u{1b}]52;c;x\\u{7}\\u{1b}[2Jb\n\tc");
    }
}
