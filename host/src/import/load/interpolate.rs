//! `${VAR}` in every string of a file, as compose interpolates it, but for
//! environment values (kept as written, read again when the stack runs).

use serde_yaml_ng::{Mapping, Value};

use crate::stack::Variables;

/// Every string interpolated, except environment values: those are kept
/// as written (`${DB_PASSWORD}`), so a secret from `.env` is read again when
/// the stack runs instead of being written into stack.toml.
pub(super) fn interpolate(map: &mut Mapping, variables: &Variables, at: &mut Vec<String>) -> Result<(), (String, String)> {
    for (key, value) in map.iter_mut() {
        at.push(key.as_str().map(str::to_string).unwrap_or_else(|| format!("{key:?}")));
        let keep = at.len() == 3 && at[0] == "services" && at[2] == "environment";
        if !keep {
            interpolate_value(value, variables, at)?;
        }
        at.pop();
    }
    Ok(())
}

fn interpolate_value(value: &mut Value, variables: &Variables, at: &mut Vec<String>) -> Result<(), (String, String)> {
    match value {
        Value::String(text) => *text = variables.interpolate(text).map_err(|e| (at.join("."), e))?,
        Value::Mapping(map) => interpolate(map, variables, at)?,
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(i.to_string());
                interpolate_value(item, variables, at)?;
                at.pop();
            }
        }
        Value::Tagged(tagged) => interpolate_value(&mut tagged.value, variables, at)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_interpolated_but_environment_values_stay_variables() {
        let variables = Variables::fixed(&[("TAG", "16"), ("PASSWORD", "secret")]);
        let mut top: Mapping = serde_yaml_ng::from_str(
            "services:\n  db:\n    image: postgres:${TAG}\n    ports: ['${PORT:-5432}:5432']\n    environment: {POSTGRES_PASSWORD: '${PASSWORD}'}",
        )
        .unwrap();
        interpolate(&mut top, &variables, &mut Vec::new()).unwrap();
        let db = &top["services"]["db"];
        assert_eq!(db["image"], Value::from("postgres:16"));
        assert_eq!(db["ports"][0], Value::from("5432:5432"));
        assert_eq!(db["environment"]["POSTGRES_PASSWORD"], Value::from("${PASSWORD}"));
    }

    #[test]
    fn an_error_names_the_key_it_is_under() {
        let mut top: Mapping = serde_yaml_ng::from_str("services: {web: {ports: ['${PORT:?set PORT}']}}").unwrap();
        let (at, _) = interpolate(&mut top, &Variables::fixed(&[]), &mut Vec::new()).unwrap_err();
        assert_eq!(at, "services.web.ports.0");
    }
}
