//! Compose's merge rules: one file over another, one service over the one
//! it extends, and what `!reset` and `!override` leave behind.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value, value::TaggedValue};

/// One file's top level merged over what came before it.
pub(super) fn merge_top(project: &mut Mapping, top: Mapping, file: &Path) -> Result<(), String> {
    for (key, value) in top {
        let name = key.as_str().unwrap_or_default().to_string();
        match (name.as_str(), value) {
            ("version", _) => {}
            ("name", value) => {
                project.insert(key, value);
            }
            ("services" | "networks" | "volumes" | "configs" | "secrets", Value::Mapping(items)) => {
                let Value::Mapping(ours) = project.entry(key).or_insert_with(|| Value::Mapping(Mapping::new())) else { unreachable!() };
                for (item, value) in items {
                    match (ours.get_mut(&item), value) {
                        (Some(Value::Mapping(base)), Value::Mapping(over)) if name == "services" => merge_service(base, over),
                        (Some(Value::Mapping(base)), Value::Mapping(over)) => merge_mapping(base, over),
                        (_, value) => {
                            ours.insert(item, value);
                        }
                    }
                }
            }
            ("services" | "networks" | "volumes" | "configs" | "secrets", Value::Null) => {}
            (other, _) if matches!(other, "services" | "networks" | "volumes" | "configs" | "secrets") => {
                return Err(format!("{}: `{other}` is not a mapping", file.display()));
            }
            (_, value) => {
                project.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Compose's merge rules for a service: mappings merge key by key;
/// `ports`, `expose`, `dns`, `cap_add`, `security_opt`, `env_file`,
/// `profiles`, `devices`, `tmpfs`, `configs` and `secrets` append;
/// `volumes` merge by target; anything else is replaced. `!reset` removes a
/// key, `!override` replaces it whole.
pub(super) fn merge_service(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        let value = match value {
            Value::Tagged(tagged) if is_tag(&tagged, "reset") => {
                base.remove(&key);
                continue;
            }
            Value::Tagged(tagged) if is_tag(&tagged, "override") => {
                base.insert(key, tagged.value);
                continue;
            }
            value => value,
        };
        let name = key.as_str().unwrap_or_default();
        match (base.get_mut(&key), value) {
            (Some(Value::Sequence(ours)), Value::Sequence(theirs)) if name == "volumes" => {
                for volume in theirs {
                    let target = volume.get("target").cloned();
                    ours.retain(|v| target.is_none() || v.get("target") != target.as_ref());
                    ours.push(volume);
                }
            }
            (Some(Value::Sequence(ours)), Value::Sequence(theirs))
                if matches!(
                    name,
                    "ports" | "expose" | "dns" | "cap_add" | "security_opt" | "env_file" | "profiles" | "devices" | "tmpfs" | "configs" | "secrets"
                ) =>
            {
                for item in theirs {
                    if !ours.contains(&item) {
                        ours.push(item);
                    }
                }
            }
            (Some(Value::Mapping(ours)), Value::Mapping(theirs)) => merge_mapping(ours, theirs),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn merge_mapping(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (_, Value::Tagged(tagged)) if is_tag(&tagged, "reset") => {
                base.remove(&key);
            }
            (_, Value::Tagged(tagged)) if is_tag(&tagged, "override") => {
                base.insert(key, tagged.value);
            }
            (Some(Value::Mapping(ours)), Value::Mapping(theirs)) => merge_mapping(ours, theirs),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What `!reset` and `!override` mean when there is nothing under them to
/// merge with: nothing, and the value.
pub(super) fn untag(map: &mut Mapping) {
    map.retain(|_, v| !matches!(v, Value::Tagged(t) if is_tag(t, "reset")));
    for (_, value) in map.iter_mut() {
        if let Value::Tagged(tagged) = value {
            *value = std::mem::replace(&mut tagged.value, Value::Null);
        }
        match value {
            Value::Mapping(inner) => untag(inner),
            Value::Sequence(items) => {
                for item in items {
                    if let Value::Mapping(inner) = item {
                        untag(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_tag(tagged: &TaggedValue, name: &str) -> bool {
    tagged.tag == name
}

pub(super) fn take_mapping(map: &mut Mapping, key: &str) -> Mapping {
    match map.remove(key) {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::normalise::tests::service;
    use super::*;

    #[test]
    fn overrides_merge_as_compose_does() {
        let mut base = service("image: a\nports: ['80:80']\nenvironment: [A=1, B=2]\nvolumes: ['./x:/data', 'v:/cache']\ncommand: [serve]");
        let over = service("ports: ['443:443']\nenvironment: {B: 3}\nvolumes: ['./y:/data:ro']\ncommand: [worker]\nlabels: !reset {}");
        merge_service(&mut base, over);
        let text = serde_yaml_ng::to_string(&base).unwrap();
        assert!(text.contains("- 80:80\n- 443:443"), "{text}");
        assert_eq!(base["environment"]["A"], Value::from("1"));
        assert_eq!(base["environment"]["B"], Value::from("3"));
        let volumes = base["volumes"].as_sequence().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1]["source"], Value::from("/p/y"));
        assert_eq!(volumes[1]["read_only"], Value::from(true));
        assert_eq!(base["command"][0], Value::from("worker"));
        assert!(base.get("labels").is_none());
    }

    #[test]
    fn a_later_file_adds_services_and_merges_those_it_names_again() {
        let top = |yaml: &str| -> Mapping { serde_yaml_ng::from_str(yaml).unwrap() };
        let mut project = Mapping::new();
        merge_top(&mut project, top("version: '3'\nname: a\nservices: {web: {image: x, environment: {A: '1'}}}"), Path::new("one.yaml")).unwrap();
        merge_top(&mut project, top("name: b\nservices: {web: {environment: {B: '2'}}, db: {image: y}}"), Path::new("two.yaml")).unwrap();
        assert!(project.get("version").is_none(), "version is dropped, as compose does");
        assert_eq!(project["name"], Value::from("b"));
        assert_eq!(project["services"]["web"]["image"], Value::from("x"));
        assert_eq!(project["services"]["web"]["environment"]["A"], Value::from("1"));
        assert_eq!(project["services"]["web"]["environment"]["B"], Value::from("2"));
        assert_eq!(project["services"]["db"]["image"], Value::from("y"));
        let err = merge_top(&mut project, top("services: [web]"), Path::new("three.yaml")).unwrap_err();
        assert!(err.contains("three.yaml") && err.contains("`services` is not a mapping"), "{err}");
    }

    #[test]
    fn reset_with_nothing_under_it_removes_the_key_and_override_leaves_its_value() {
        let mut map: Mapping = serde_yaml_ng::from_str("a: !reset []\nb: !override {c: 1}\nd: 2").unwrap();
        untag(&mut map);
        assert!(map.get("a").is_none());
        assert_eq!(map["b"]["c"], Value::from(1));
        assert_eq!(map["d"], Value::from(2));
    }
}
