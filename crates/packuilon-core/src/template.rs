//! Packer templates with `$METADATA`, `$NAME` and `$IMAGE` placeholders,
//! rendered so the result is valid JSON whatever the values hold.
//!
//! The template is scanned once, JSON string literals told apart from the
//! rest. Inside a string literal a placeholder becomes its JSON-escaped
//! value. Outside one, `$NAME` and `$IMAGE` become JSON strings and
//! `$METADATA` becomes the metadata as JSON object members (`"K": "v", …`),
//! which is what `"instance_metadata": { $METADATA }` expects. A placeholder
//! is matched only as a whole word (`$NAMES` is left alone), and values are
//! never re-scanned, so a value holding `$IMAGE` stays as it is. The result
//! must parse as JSON.

use std::path::Path;

use crate::error::{Error, Result};
use crate::profile::BuildPlan;

const PLACEHOLDERS: [&str; 3] = ["$METADATA", "$NAME", "$IMAGE"];

fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::Value::String(s.to_string()).to_string()
}

fn escaped(s: &str) -> String {
    let quoted = json_string(s);
    quoted[1..quoted.len() - 1].to_string()
}

fn metadata_members(plan: &BuildPlan) -> String {
    plan.metadata
        .iter()
        .map(|(k, v)| format!("{}: {}", json_string(k), json_string(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Render `template` (the text of the file at `path`) for `plan`.
pub fn render(template: &str, path: &Path, plan: &BuildPlan) -> Result<String> {
    let members = metadata_members(plan);
    let mut out = String::with_capacity(template.len() + members.len());
    let mut in_string = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if in_string && c == '\\' {
            // Copy the escape and the escaped character untouched.
            let mut it = rest.char_indices();
            it.next();
            let end = it.next().map_or(rest.len(), |(i, ch)| i + ch.len_utf8());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if c == '"' {
            in_string = !in_string;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        if c == '$' {
            let hit = PLACEHOLDERS.iter().find(|p| {
                rest.starts_with(**p)
                    && !rest[p.len()..]
                        .chars()
                        .next()
                        .is_some_and(|n| n.is_ascii_alphanumeric() || n == '_')
            });
            if let Some(p) = hit {
                let value = match *p {
                    "$METADATA" if in_string => escaped(&members),
                    "$METADATA" => members.clone(),
                    "$NAME" if in_string => escaped(&plan.pretty_name),
                    "$NAME" => json_string(&plan.pretty_name),
                    _ if in_string => escaped(&plan.source_image),
                    _ => json_string(&plan.source_image),
                };
                out.push_str(&value);
                rest = &rest[p.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str::<serde_json::Value>(&out).map_err(|source| Error::RenderedNotJson {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(out)
}

/// Read the template at `path` and render it for `plan`.
pub fn render_file(path: &Path, plan: &BuildPlan) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    render(&text, path, plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn plan(name: &str) -> BuildPlan {
        BuildPlan {
            name: "n".into(),
            pretty_name: name.into(),
            source_image: "11111111-2222".into(),
            metadata: vec![
                ("AQ_PERSONALITY".into(), "p\"q".into()),
                ("AQ_OS".into(), "sl".into()),
            ],
            templates: vec![],
        }
    }

    #[test]
    fn substitutes_inside_and_outside_strings() {
        let t = r#"{"a": "$NAME AQ", "b": $NAME, "img": "$IMAGE", "m": { $METADATA }, "keep": "$NAMES \"$NAME\""}"#;
        let out = render(t, Path::new("t.json"), &plan("sl7x-x86_64 web")).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], "sl7x-x86_64 web AQ");
        assert_eq!(v["b"], "sl7x-x86_64 web");
        assert_eq!(v["img"], "11111111-2222");
        assert_eq!(v["m"], json!({"AQ_PERSONALITY": "p\"q", "AQ_OS": "sl"}));
        assert_eq!(v["keep"], "$NAMES \"sl7x-x86_64 web\"");
    }

    #[test]
    fn hostile_values_stay_inside_their_strings() {
        let nasty = r#"x", "injected": "y\ $IMAGE"#;
        let t = r#"{"name": "$NAME", "inline": ["echo $NAME"]}"#;
        let out = render(t, Path::new("t.json"), &plan(nasty)).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], nasty);
        assert_eq!(v["inline"][0], format!("echo {nasty}"));
        assert!(v.get("injected").is_none());
    }

    #[test]
    fn template_that_is_not_json_is_an_error() {
        let e = render("{\"a\": $NAME", Path::new("/t/bad.json"), &plan("x"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/t/bad.json: rendered template is not valid JSON"),
            "{e}"
        );
    }
}
