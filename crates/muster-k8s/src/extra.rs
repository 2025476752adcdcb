//! Operator overrides (`RenderInput::extra`) merged over what muster rendered.
//!
//! Two shapes. k3s and RKE2 config files are flat (a key per CLI flag), so [`merge_flat`]
//! replaces or adds top-level keys, checks an override has the rendered key's type, leaves
//! server-only keys out of agent configs, and extends the address lists (`tls-san`) instead of
//! replacing them, so the endpoint stays in the certificate. kubeadm documents are nested, so
//! [`merge_deep`] merges mappings key by key, replaces scalars and lists (extending the
//! additive lists: certificate SANs, v1beta4 `kubeletExtraArgs`), and refuses a mapping where a
//! scalar was rendered or the other way round. Both refuse the keys muster owns ([`Rules::reserved`]).

use serde_json::{Map, Value};

use crate::RenderError;

/// What an override may and may not do, per distribution.
pub struct Rules<'a> {
    /// Keys (dotted paths for kubeadm) muster owns: overriding one is an error.
    pub reserved: &'a [&'a str],
    /// Lists an override extends rather than replaces.
    pub additive: &'a [&'a str],
    /// Flat keys only servers accept: dropped from agent configs (k3s / RKE2).
    pub server_only: &'a [&'a str],
}

/// Merges flat `extra` keys into `rendered`; `server` is whether the host runs a server.
pub fn merge_flat(
    rendered: &mut Map<String, Value>,
    extra: &Map<String, Value>,
    server: bool,
    rules: &Rules,
) -> Result<(), RenderError> {
    for (key, value) in extra {
        if rules.reserved.contains(&key.as_str()) {
            return Err(RenderError::ExtraReserved { key: key.clone() });
        }
        let flat = match value {
            Value::Object(_) => false,
            Value::Array(items) => items.iter().all(|i| !i.is_object() && !i.is_array()),
            _ => true,
        };
        if !flat {
            return Err(type_error(
                key,
                "a string, number, boolean or list of them (the config file is flat)",
            ));
        }
        if !server && rules.server_only.contains(&key.as_str()) {
            continue;
        }
        match rendered.get_mut(key) {
            Some(existing) => {
                check_same_type(key, existing, value)?;
                if rules.additive.contains(&key.as_str()) {
                    extend(existing, value);
                } else {
                    *existing = value.clone();
                }
            }
            None => {
                rendered.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

/// Merges `extra` into `target` at `path` (a dotted path for messages and rules).
pub fn merge_deep(
    target: &mut Value,
    extra: &Value,
    path: &str,
    rules: &Rules,
) -> Result<(), RenderError> {
    if rules.reserved.contains(&path) {
        return Err(RenderError::ExtraReserved {
            key: path.to_owned(),
        });
    }
    match target {
        Value::Object(map) => {
            let Value::Object(extra) = extra else {
                return Err(type_error(path, "a mapping"));
            };
            for (key, value) in extra {
                let sub = format!("{path}.{key}");
                match map.get_mut(key) {
                    Some(existing) => merge_deep(existing, value, &sub, rules)?,
                    None => {
                        check_reserved_tree(value, &sub, rules)?;
                        map.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Value::Array(_) => {
            if !extra.is_array() {
                return Err(type_error(path, "a list"));
            }
            if rules.additive.contains(&path) {
                extend(target, extra);
            } else {
                *target = extra.clone();
            }
        }
        _ => {
            if extra.is_object() || extra.is_array() {
                return Err(type_error(path, "a single value"));
            }
            *target = extra.clone();
        }
    }
    Ok(())
}

/// Refuses a new subtree that sets a reserved path anywhere inside it.
pub fn check_reserved_tree(value: &Value, path: &str, rules: &Rules) -> Result<(), RenderError> {
    if rules.reserved.contains(&path) {
        return Err(RenderError::ExtraReserved {
            key: path.to_owned(),
        });
    }
    if let Value::Object(map) = value {
        for (key, item) in map {
            check_reserved_tree(item, &format!("{path}.{key}"), rules)?;
        }
    }
    Ok(())
}

/// Refuses an override whose type does not fit the rendered value's.
fn check_same_type(key: &str, existing: &Value, value: &Value) -> Result<(), RenderError> {
    let ok = match existing {
        Value::Bool(_) => value.is_boolean(),
        Value::String(_) => value.is_string(),
        Value::Number(_) => value.is_number(),
        Value::Array(_) => value.is_array() || value.is_string(),
        Value::Null | Value::Object(_) => true,
    };
    if ok {
        return Ok(());
    }
    Err(type_error(
        key,
        match existing {
            Value::Bool(_) => "a boolean",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            _ => "a list or a string",
        },
    ))
}

/// Appends `value` (a list, or one item) to the list `existing`, skipping items already there.
fn extend(existing: &mut Value, value: &Value) {
    let Value::Array(list) = existing else {
        *existing = value.clone();
        return;
    };
    let items = match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn type_error(key: &str, expected: &'static str) -> RenderError {
    RenderError::ExtraType {
        key: key.to_owned(),
        expected,
    }
}
