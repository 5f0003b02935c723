//! Property tests over packuilon's inputs: Quattor profiles (message
//! bodies), Packer templates and `config.ini`. Arbitrary input gives `Ok` or
//! an error naming the message, file (and line), never a panic or a hang;
//! a rendered template is always valid JSON; `RABBIT_PW` never shows in a
//! configuration error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use packuilon_core::config::Config;
use packuilon_core::profile::{BuildPlan, Profile};
use packuilon_core::template::render;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Any string, including quotes, backslashes, control characters and
/// placeholders.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\x00]{0,12}",
        "(\\$NAME|\\$IMAGE|\\$METADATA|\"|\\\\|\\{|\\}|[a-z ]){0,8}",
        Just(String::new()),
    ]
}

/// A JSON value shaped like a profile at some depth, with holes and
/// wrong types.
fn profile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any_text().prop_map(Value::String),
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
    ];
    (
        prop::collection::vec(leaf, 9),
        prop::collection::vec(any::<bool>(), 9),
        prop::sample::select(vec!["domain", "sandbox", "other"]),
    )
        .prop_map(|(v, keep, branch_type)| {
            let mut p = json!({
                "system": {
                    "personality": {"name": v[0]},
                    "archetype": {"name": v[1]},
                    "os": {
                        "distribution": {"name": v[2]},
                        "version": {"name": v[3]},
                        "architecture": v[4],
                    },
                    "network": {"hostname": v[5]},
                },
                "metadata": {"template": {"branch": {
                    "type": branch_type, "name": v[6], "author": v[7]
                }}},
            });
            // Knock out some fields entirely.
            let pointers = [
                "/system/personality",
                "/system/archetype/name",
                "/system/os/distribution",
                "/system/os/version/name",
                "/system/os/architecture",
                "/system/network",
                "/metadata/template/branch/name",
                "/metadata/template/branch/author",
                "/metadata",
            ];
            for (ptr, keep) in pointers.iter().zip(keep) {
                if !keep {
                    if let Some((parent, key)) = ptr.rsplit_once('/') {
                        if let Some(Value::Object(m)) = p.pointer_mut(parent) {
                            m.remove(key);
                        }
                    }
                }
            }
            p
        })
}

fn plan() -> impl Strategy<Value = BuildPlan> {
    (
        any_text(),
        any_text(),
        prop::collection::vec((any_text(), any_text()), 0..5),
    )
        .prop_map(|(pretty_name, source_image, metadata)| BuildPlan {
            name: "build".into(),
            pretty_name,
            source_image,
            metadata,
            templates: vec![],
        })
}

/// A template: valid JSON with placeholders in string and member positions.
fn valid_template() -> impl Strategy<Value = String> {
    (any_text(), any::<bool>()).prop_map(|(text, with_members)| {
        let literal = serde_json::Value::String(format!("{text} $NAME $IMAGE $METADATA"));
        let members = if with_members { "$METADATA" } else { "" };
        format!(
            "{{\"builders\": [{{\"image_name\": $NAME, \"source_image\": $IMAGE, \"note\": {literal}, \"instance_metadata\": {{ {members} }}}}]}}"
        )
    })
}

const PASSWORD: &str = "Zs3cr%(Zx)s;Z";

fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "[global]",
            "[rabbit2packer]",
            "[cdb2rabbit]",
            "[rename-old-images]",
            "[test-gate]",
            "[global",
            "RABBIT_PORT = 70000",
            "RABBIT_PORT = x",
            "THREAD_COUNT = 0",
            "MAX_ATTEMPTS = -1",
            "RETRY_DELAY = soon",
            "RENAME_STYLE = weekly",
            "UPDATE_SOURCE_IMAGES = maybe",
            "TIMEOUT = 0",
            "TEST_SCRIPT =",
            "QUEUE =",
            "  continued",
            "no delimiter",
        ])
        .prop_map(String::from),
        "[A-Y_]{1,8} ?[=:] ?[a-zA-Y0-9%(); ]{0,12}",
        "[^Z\\n]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_profile_gives_a_profile_or_an_error_naming_the_message(p in profile_json()) {
        let body = serde_json::to_vec(&p).unwrap();
        match Profile::from_json(&body, "message 7") {
            Ok(profile) => {
                let _ = (profile.name(), profile.pretty_name(), profile.metadata());
            }
            Err(e) => prop_assert!(e.to_string().starts_with("message 7: "), "{e}"),
        }
    }

    #[test]
    fn any_bytes_as_a_profile_are_refused_with_the_message_name(body in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = Profile::from_json(&body, "message 8") {
            prop_assert!(e.to_string().starts_with("message 8: "), "{e}");
        }
    }

    #[test]
    fn a_valid_template_always_renders_to_valid_json(t in valid_template(), plan in plan()) {
        let path = Path::new("/etc/packer-utils/t.json");
        let out = render(&t, path, &plan);
        prop_assert!(out.is_ok(), "{t}\n{out:?}");
        let out = out.unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(
            v.pointer("/builders/0/image_name").and_then(Value::as_str),
            Some(plan.pretty_name.as_str())
        );
        prop_assert_eq!(
            v.pointer("/builders/0/source_image").and_then(Value::as_str),
            Some(plan.source_image.as_str())
        );
    }

    #[test]
    fn any_template_renders_or_names_its_file(t in any_text(), plan in plan()) {
        let path = Path::new("/etc/packer-utils/t.json");
        match render(&t, path, &plan) {
            Ok(out) => prop_assert!(serde_json::from_str::<Value>(&out).is_ok()),
            Err(e) => prop_assert!(e.to_string().starts_with("/etc/packer-utils/t.json: "), "{e}"),
        }
    }

    #[test]
    fn any_config_loads_or_names_file_and_never_the_password(
        mut lines in prop::collection::vec(config_line(), 0..14),
        at in 0usize..16,
    ) {
        let at = at.min(lines.len());
        lines.insert(at, format!("RABBIT_PW = {PASSWORD}"));
        let text = lines.join("\n");
        let path = Path::new("/etc/packer-utils/config.ini");
        match Config::parse(path, &text) {
            Ok(c) => {
                let debug = format!("{c:?}");
                prop_assert!(!debug.contains(PASSWORD));
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("/etc/packer-utils/config.ini"), "{shown}");
                prop_assert!(!shown.contains(PASSWORD) && !shown.contains("Zx"), "{shown}");
                let debug = format!("{e:?}");
                prop_assert!(!debug.contains(PASSWORD));
            }
        }
    }
}
