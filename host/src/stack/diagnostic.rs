//! Errors that point into stack.toml: every key's span, recorded while
//! parsing, and the diagnostic that shows the line a key is on. Must not
//! decide what is an error: the parser and the planner do.

use std::{collections::HashMap, ops::Range, path::PathBuf, sync::Arc};

use miette::{Diagnostic, NamedSource, SourceSpan};

use super::Stack;

/// An error at a place in stack.toml, shown with the line it is on.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct StackError {
    pub message: String,
    #[source_code]
    src: NamedSource<Arc<String>>,
    #[label("{label}")]
    pub(super) span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

/// Reading the file itself failed.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("cannot read {}", path.display())]
#[diagnostic(help("run provision in a folder with a stack.toml, or point at one with -f FILE"))]
pub struct ReadError {
    pub(super) path: PathBuf,
    #[source]
    pub(super) error: std::io::Error,
}

impl Stack {
    /// An error about `key` (a dotted path); points at the nearest enclosing
    /// key that is written in the file when `key` itself is not.
    pub fn error_at(&self, key: &str, message: impl Into<String>, label: impl Into<String>, help: Option<String>) -> StackError {
        let mut path = key;
        let span = loop {
            if let Some(span) = self.spans.get(path) {
                break span.clone();
            }
            match path.rfind('.') {
                Some(dot) => path = &path[..dot],
                None => break 0..0,
            }
        };
        self.error_at_span(span, message, label, help)
    }

    /// `stack.toml:LINE` of `key` (or of the nearest key written), for
    /// warnings that are not errors.
    pub fn place(&self, key: &str) -> String {
        let offset = self.error_at(key, "", "", None).span.offset();
        let line = self.source[..offset.min(self.source.len())].matches('\n').count() + 1;
        format!("{}:{line}", self.path.display())
    }

    pub(super) fn error_at_span(&self, span: Range<usize>, message: impl Into<String>, label: impl Into<String>, help: Option<String>) -> StackError {
        StackError {
            message: message.into(),
            src: NamedSource::new(self.path.display().to_string(), self.source.clone()),
            span: span.into(),
            label: label.into(),
            help,
        }
    }
}

/// Record the span of every key, descending into tables and arrays.
pub(super) fn index_spans(spans: &mut HashMap<String, Range<usize>>, prefix: &str, table: &toml::de::DeTable<'_>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        let (k, v) = (key.span(), value.span());
        // `key = value` when both are on one line; the key alone for tables
        // whose body (or header) is elsewhere.
        let span = match value.get_ref() {
            toml::de::DeValue::Table(_) => k.clone(),
            _ if v.start >= k.end => k.start..v.end,
            _ => k.clone(),
        };
        // A key written twice ([a.b] then [a.b.c]) keeps its first place.
        spans.entry(path.clone()).or_insert(span);
        index_value(spans, &path, value.get_ref());
    }
}

fn index_value(spans: &mut HashMap<String, Range<usize>>, path: &str, value: &toml::de::DeValue<'_>) {
    match value {
        toml::de::DeValue::Table(t) => index_spans(spans, path, t),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}.{i}");
                spans.entry(item_path.clone()).or_insert(item.span());
                index_value(spans, &item_path, item.get_ref());
            }
        }
        _ => {}
    }
}
