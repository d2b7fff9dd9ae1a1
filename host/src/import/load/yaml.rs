//! Reading values out of the YAML tree the way compose reads them, and
//! the nesting check that runs before the parser.

use serde_yaml_ng::Value;

/// A value that may be one item or a list, as a list.
pub(crate) fn sequence(value: Option<Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(one) => vec![one],
    }
}

/// A string or a list of strings, as strings.
pub(crate) fn strings(value: Option<&Value>) -> Vec<String> {
    sequence(value.cloned()).iter().filter_map(scalar).collect()
}

/// The keys of a mapping other than `known`: what a mapping sets that the
/// import does not carry over.
pub(crate) fn other_keys(value: &Value, known: &[&str]) -> Vec<String> {
    value.as_mapping().into_iter().flat_map(|m| m.keys().filter_map(Value::as_str)).filter(|k| !known.contains(k)).map(str::to_string).collect()
}

/// A scalar as compose reads it into a string field.
pub(crate) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Flow collections (`[`, `{`) nested deeper than this are refused before
/// the YAML parser sees them: it takes time quadratic in their depth
/// (100,000 `[` took over 20 s), and no compose file nests more than a few.
const MAX_NESTING: usize = 64;

/// Refuse flow collections nested deeper than `MAX_NESTING`, counted
/// outside quotes and comments.
pub(super) fn nesting(text: &str) -> Result<(), String> {
    let (mut depth, mut quote, mut comment, mut previous) = (0usize, None, false, '\n');
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            comment = false;
        }
        match (quote, c) {
            _ if comment => {}
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => {
                // `''` inside single quotes is a quote, not the end.
                if q == '\'' && chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("line {line}: collections nested more than {MAX_NESTING} deep; refusing it"));
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_before_parsing_and_quotes_and_comments_do_not_count() {
        assert!(nesting(&format!("a: {}", "[".repeat(100_000))).unwrap_err().contains("nested more than 64 deep"));
        assert!(nesting(&format!("a: {}{}", "[".repeat(64), "]".repeat(64))).is_ok());
        assert!(nesting(&format!("a: \"{}\"\nb: '{}'\n# {}\n", "[".repeat(100), "[".repeat(100), "{".repeat(100))).is_ok());
        assert!(nesting(&format!("a: 'it''s {}'", "[".repeat(100))).is_ok());
    }

    #[test]
    fn one_item_or_a_list_reads_as_a_list_and_scalars_as_strings() {
        let value = |yaml: &str| -> Value { serde_yaml_ng::from_str(yaml).unwrap() };
        assert_eq!(strings(Some(&value("a"))), ["a"]);
        assert_eq!(strings(Some(&value("[a, 2, true, {x: 1}]"))), ["a", "2", "true"]);
        assert!(sequence(Some(Value::Null)).is_empty());
        assert_eq!(other_keys(&value("{test: x, interval: 1s, disable: false}"), &["test", "interval"]), ["disable"]);
    }
}
