//! Interpolation as Docker Compose does it, in every string of stack.toml:
//! `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` / `${VAR?message}` (required), `$VAR`, and `$$` for a
//! literal `$`. Values come from the environment, then from a `.env` file
//! beside stack.toml. `${SERVICE.OUTPUT}` (a dot: not a variable name) is
//! left for the planner, which fills it with another service's output.
//!
//! Each string is read for `$` once: a reference is kept between two
//! `REFERENCE` marks, which no string of stack.toml may hold, so text that
//! only looks like one (`$${db.password}`, or a variable whose value is
//! `${db.password}`) stays text and never reaches another service's outputs.

use std::{cell::RefCell, collections::HashMap, path::Path};

use toml::Value;

use super::{Stack, StackError};

/// Marks a kept `${service.output}` reference (NUL: refused in the file).
const REFERENCE: char = '\0';

/// Where variables come from: the process environment wins over `.env`.
pub struct Variables {
    dotenv: HashMap<String, String>,
    environment: bool,
    forced: HashMap<String, String>,
    /// Names read with no default while unset (`$VAR`, `${VAR}`): they
    /// become "", which compose warns about, and so do we.
    unset: RefCell<Vec<String>>,
}

impl Variables {
    /// The environment and `DIR/.env` (absent is fine; unreadable is not).
    pub fn for_dir(dir: &Path) -> Result<Variables, String> {
        Variables::with_file(&dir.join(".env"), false)
    }

    /// The environment and the env file at `path` (which must exist when
    /// `required`, as with compose's `--env-file`).
    pub fn with_file(path: &Path, required: bool) -> Result<Variables, String> {
        let dotenv = match provision_registry::files::read_regular_text(path, provision_registry::files::MAX_TEXT_BYTES) {
            Ok(text) => parse_dotenv(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => HashMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Variables { dotenv, environment: true, forced: HashMap::new(), unset: RefCell::default() })
    }

    /// Only these (for tests and fuzzing: no environment).
    pub fn fixed(pairs: &[(&str, &str)]) -> Variables {
        Variables {
            dotenv: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            environment: false,
            forced: HashMap::new(),
            unset: RefCell::default(),
        }
    }

    /// `name` is `value`, whatever the environment says (compose's
    /// COMPOSE_PROJECT_NAME is the project's name).
    pub fn set(&mut self, name: &str, value: &str) {
        self.forced.insert(name.to_string(), value.to_string());
    }

    /// A variable's value, if set (COMPOSE_PROFILES…).
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// The unset variables read as "" since the last call, each once.
    pub fn take_unset(&self) -> Vec<String> {
        let mut names = std::mem::take(&mut *self.unset.borrow_mut());
        names.dedup();
        names
    }

    fn get_or_blank(&self, name: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            self.unset.borrow_mut().push(name.to_string());
            String::new()
        })
    }

    fn get(&self, name: &str) -> Option<String> {
        // A value is text: a NUL in it could pose as a reference mark.
        if let Some(value) = self.forced.get(name) {
            return Some(value.clone());
        }
        let value = self.environment.then(|| std::env::var(name).ok()).flatten().or_else(|| self.dotenv.get(name).cloned());
        value.map(|v| v.replace(REFERENCE, ""))
    }

    /// `text` with every variable replaced. The error says which and why.
    pub fn interpolate(&self, text: &str) -> Result<String, String> {
        if text.contains(REFERENCE) {
            return Err("it holds a NUL character, which no command, env value or path can hold".into());
        }
        if !text.contains('$') {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                out.push('$');
                rest = after;
            } else if let Some(body) = rest.strip_prefix('{') {
                let end = body.find('}').ok_or_else(|| format!("`${{` without its closing `}}` in {text:?}"))?;
                let expression = &body[..end];
                rest = &body[end + 1..];
                match self.expand(expression)? {
                    Some(value) => out.push_str(&value),
                    // An output reference: kept for the planner, marked.
                    None => {
                        out.push(REFERENCE);
                        out.push_str(expression);
                        out.push(REFERENCE);
                    }
                }
            } else {
                let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push('$');
                } else {
                    out.push_str(&self.get_or_blank(&rest[..len]));
                    rest = &rest[len..];
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// One `${…}`; None for an output reference (`service.output`).
    fn expand(&self, expression: &str) -> Result<Option<String>, String> {
        if output_reference(expression).is_some() {
            return Ok(None);
        }
        let name_len = expression.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_len);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`${{{expression}}}` does not start with a variable name"));
        }
        let value = self.get(name);
        let set = value.is_some();
        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        let pick = |ok: bool, default: &str| Ok(Some(if ok { value.clone().unwrap_or_default() } else { default.to_string() }));
        let required = |ok: bool, message: &str| {
            if ok {
                Ok(Some(value.clone().unwrap_or_default()))
            } else if message.is_empty() {
                Err(format!("variable {name} is required but not set; set it in the environment or in .env"))
            } else {
                Err(format!("variable {name} is required: {message}"))
            }
        };
        match operator {
            "" => Ok(Some(self.get_or_blank(name))),
            _ if operator.starts_with(":-") => pick(nonempty, &operator[2..]),
            _ if operator.starts_with('-') => pick(set, &operator[1..]),
            _ if operator.starts_with(":?") => required(nonempty, &operator[2..]),
            _ if operator.starts_with('?') => required(set, &operator[1..]),
            _ => Err(format!("`${{{expression}}}`: expected ${{VAR}}, ${{VAR:-default}} or ${{VAR:?message}}")),
        }
    }
}

/// `service.output` inside `${…}`: a reference to another service's
/// output. Service names are lower-case, so `${HOST-a.b}` stays a variable.
pub fn output_reference(expression: &str) -> Option<(&str, &str)> {
    let (service, output) = expression.split_once('.')?;
    let service_ok =
        service.starts_with(|c: char| c.is_ascii_lowercase()) && service.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let output_ok = !output.is_empty() && output.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (service_ok && output_ok).then_some((service, output))
}

/// Every `${service.output}` reference kept in `text` by `interpolate`.
pub fn output_references(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split(REFERENCE).skip(1).step_by(2).filter_map(output_reference)
}

/// Whether `text` holds a reference still to be filled.
pub fn has_references(text: &str) -> bool {
    text.contains(REFERENCE)
}

/// `text` as the user wrote it, for messages: references as `${…}`.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split(REFERENCE).enumerate() {
        if i % 2 == 1 {
            out.push_str("${");
            out.push_str(part);
            out.push('}');
        } else {
            out.push_str(part);
        }
    }
    out
}

/// `text` with each reference kept by `interpolate` replaced by `lookup`'s
/// answer, once: what a value holds is never read for references again.
/// The error names a reference `lookup` does not know.
pub fn fill_outputs(text: &str, lookup: &dyn Fn(&str, &str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split(REFERENCE).enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
            continue;
        }
        let (service, output) = output_reference(part).ok_or_else(|| format!("`${{{part}}}` is not a reference"))?;
        out.push_str(&lookup(service, output).ok_or_else(|| format!("`${{{service}.{output}}}`: service `{service}` has no output `{output}`"))?);
    }
    Ok(out)
}

/// `KEY=value` lines; `#` comments, blank lines, `export KEY=…`, and values
/// in single (literal) or double quotes.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, String> {
    let mut vars = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or_else(|| format!("line {}: expected KEY=value", i + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: {key:?} is not a variable name", i + 1));
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v.replace("\\n", "\n").replace("\\\"", "\"")
        } else {
            // An unquoted value ends at ` #`.
            value.split(" #").next().unwrap_or_default().trim_end().to_string()
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

/// Variables filled into a stack as it is read, with a warning at the line
/// of each one read while unset.
impl Stack {
    /// Replace variables in every string value, in place.
    pub(super) fn interpolate(&mut self, table: &mut toml::Table, prefix: &str, variables: &Variables) -> Result<(), StackError> {
        for (key, value) in table.iter_mut() {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            self.interpolate_value(value, &path, variables)?;
        }
        Ok(())
    }

    fn interpolate_value(&mut self, value: &mut Value, path: &str, variables: &Variables) -> Result<(), StackError> {
        match value {
            Value::String(s) => {
                *s = variables.interpolate(s).map_err(|e| {
                    let help =
                        if e.contains("required") { "set it in the environment, or in .env beside stack.toml" } else { "`$$` writes a literal `$`" };
                    self.error_at(path, e, "interpolated here", Some(help.into()))
                })?;
                for name in variables.take_unset() {
                    let warning = format!(
                        "{}: `{path}`: variable {name} is not set, so it reads as \"\" (set it in the environment or in .env, \
                         or write ${{{name}:-}} where empty is meant)",
                        self.place(path)
                    );
                    self.warnings.push(warning);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_value(item, &format!("{path}.{i}"), variables)?;
                }
            }
            Value::Table(t) => self.interpolate(t, path, variables)?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_forms() {
        let vars = Variables::fixed(&[("PORT", "5433"), ("EMPTY", "")]);
        let i = |t: &str| vars.interpolate(t);
        assert_eq!(i("${PORT}").unwrap(), "5433");
        assert_eq!(i("$PORT/x").unwrap(), "5433/x");
        assert_eq!(i("${MISSING:-5432}").unwrap(), "5432");
        assert_eq!(i("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(i("${EMPTY-d}").unwrap(), "");
        assert_eq!(i("$${PORT} costs $$5 and $").unwrap(), "${PORT} costs $5 and $");
        assert_eq!(i("${MISSING:?set the token}").unwrap_err(), "variable MISSING is required: set the token");
        assert!(i("${MISSING?}").unwrap_err().contains("required but not set"));
        assert!(i("${PORT").is_err());
        assert_eq!(shown(&i("${db.url}/x").unwrap()), "${db.url}/x");
        assert!(i("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn text_is_read_for_references_once() {
        let vars = Variables::fixed(&[("LOOKS_LIKE", "${db.password}"), ("SNEAKY", "\0db.password\0")]);
        let lookup = |s: &str, o: &str| (s == "db").then(|| format!("<{o}>"));
        let filled = |t: &str| fill_outputs(&vars.interpolate(t).unwrap(), &lookup).unwrap();
        assert_eq!(filled("$${db.password}"), "${db.password}", "`$$` is a literal `$`");
        assert_eq!(filled("${LOOKS_LIKE}"), "${db.password}", "a value is not read again");
        assert_eq!(filled("$LOOKS_LIKE"), "${db.password}");
        assert_eq!(filled("${SNEAKY}"), "db.password", "a NUL in a value is no mark");
        assert_eq!(filled("$${x} ${db.url}"), "${x} <url>");
        assert_eq!(output_references(&vars.interpolate("$${db.password}").unwrap()).count(), 0);
    }

    #[test]
    fn outputs_are_filled_by_the_planner() {
        let text = &Variables::fixed(&[]).interpolate("postgres://${db.host}:${db.port}/x").unwrap();
        assert_eq!(output_references(text).collect::<Vec<_>>(), [("db", "host"), ("db", "port")]);
        let filled = fill_outputs(text, &|s, o| (s == "db").then(|| format!("<{o}>"))).unwrap();
        assert_eq!(filled, "postgres://<host>:<port>/x");
        let text = &Variables::fixed(&[]).interpolate("${cache.url}").unwrap();
        assert!(fill_outputs(text, &|_, _| None).unwrap_err().contains("no output `url`"));
    }

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv("# c\nA=1\nexport B = \"two words\"\nC='$lit'\nD=x # note\n").unwrap();
        assert_eq!((vars["A"].as_str(), vars["B"].as_str(), vars["C"].as_str(), vars["D"].as_str()), ("1", "two words", "$lit", "x"));
        assert!(parse_dotenv("no equals").is_err());
    }
}
