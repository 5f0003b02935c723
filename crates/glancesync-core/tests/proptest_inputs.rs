//! Property tests over glancesync's inputs, through the public API only:
//! the `metadata_condition` language, backup CSV rows (the CSV backend's
//! region files) and whole configuration files. Arbitrary input gives `Ok`
//! or an error (naming the file and line where there is one), never a panic
//! or a hang; a password never shows in a configuration error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use glancesync_core::condition::Condition;
use glancesync_core::config::{ConfigSource, GlanceSyncConfig, LoadOptions};
use glancesync_core::image::{images_to_csv, parse_csv, Image};
use proptest::prelude::*;

fn sample_image() -> Image {
    match Image::from_fields(&[
        "RegionOne",
        "base-image",
        "0a1b",
        "active",
        "1048576",
        "d41d8cd98f00b204e9800998ecf8427e",
        "tenant1id",
        "True",
        "{'type': 'baseimage', 'nid': 3, 'l': [1, 'a', None], 'd': {'k': True}}",
    ]) {
        Ok(image) => image,
        Err(e) => panic!("sample image: {e}"),
    }
}

/// Tokens of the condition language, and some that are not in it.
fn condition_token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "image",
            "image.name",
            "image.is_public",
            "image.user_properties",
            "image.size",
            "image.status",
            "image.owner",
            "image.checksum",
            "image.region",
            "metadata_set",
            "and",
            "or",
            "not",
            "in",
            "not in",
            "is",
            "is not",
            "None",
            "True",
            "False",
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            ".",
            "-",
            "+",
            "*",
            "**",
            "lambda",
            "len",
            ".get(",
            ".keys()",
            ".intersection(",
            ".startswith(",
            ".endswith(",
            "'type'",
            "'nid'",
            "'baseimage'",
            "\"x\"",
            "3",
            "0",
            "-1",
            "1.5",
            "1e300",
            "99999999999999999999999",
            "'\\x41'",
            "'unterminated",
            "\\",
            "\n",
            "#",
        ])
        .prop_map(String::from),
        "[a-z_]{1,6}",
        "'[^'\\\\]{0,5}'",
        "[0-9]{1,25}",
        "[^\\n]{1,3}",
    ]
}

fn condition_text() -> impl Strategy<Value = String> {
    prop::collection::vec(condition_token(), 0..14).prop_map(|t| t.join(" "))
}

/// A backup CSV row: nine fields (sometimes more or fewer), fields either
/// plausible or arbitrary, quoted or not.
fn csv_field() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _-]{0,8}",
        "[0-9]{1,22}",
        prop::sample::select(vec!["True", "False", "active", "queued", "None", "-1"])
            .prop_map(String::from),
        "\\{('[a-z]{1,3}': ('[a-z]{0,3}'|[0-9]{1,3}|True|None|\\[[0-9, ]{0,6}\\]), ?){0,3}\\}",
        "[^\\n]{0,12}",
        "\"[^\"]{0,8}\"(\"[^\"]{0,4}\")?",
        "\"[^\"]{0,8}",
    ]
}

fn csv_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(csv_field(), 7..11), 0..6).prop_map(|rows| {
        rows.iter()
            .map(|r| r.join(","))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

const PASSWORD: &str = "Zpw%Z(Zx)s";

fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "[main]",
            "[master]",
            "[other]",
            "[DEFAULT]",
            "master_region = RegionOne",
            "preferable_order = a, b",
            "max_children = 2",
            "max_children = 0",
            "only_tenant_images = maybe",
            "list_images_timeout = -1",
            "transfer = fast",
            "credential = u,cA==,http://k:5000/v3,t",
            "credential = u,!!,http://k,t",
            "credential = a,b",
            "user = u",
            "keystone_url = http://k",
            "tenant = t",
            "metadata_condition = image.name ==",
            "metadata_set = nid, type",
            "forcesyncs = a,\\",
            "  b",
            "use_keystone_v3 = True",
            "images_dir = /tmp",
        ])
        .prop_map(String::from),
        "[a-z_]{1,8} = [a-zA-Y0-9%(),. ]{0,12}",
        "[^Z\\n]{0,12}",
    ]
}

fn config_text() -> impl Strategy<Value = (String, usize)> {
    (prop::collection::vec(config_line(), 0..14), 0usize..16).prop_map(|(mut lines, at)| {
        let at = at.min(lines.len());
        lines.insert(at, format!("password = {PASSWORD}"));
        (lines.join("\n"), at + 1)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_condition_compiles_or_is_refused_and_evaluates_without_panic(src in condition_text()) {
        let image = sample_image();
        let metadata_set: BTreeSet<String> = ["type".to_string(), "nid".to_string()].into();
        match Condition::compile(&src) {
            Ok(Some(condition)) => {
                // Either a value or an evaluation error; never a panic.
                let _ = condition.eval(&image, &metadata_set);
                let _ = condition.matches(&image, &metadata_set);
            }
            Ok(None) => prop_assert!(src.trim().is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_backup_csv_parses_or_names_file_and_line(text in csv_text()) {
        let path = Path::new("/var/lib/backup_RegionOne.csv");
        let lines = text.split('\n').count() as u64;
        match parse_csv(path, &text) {
            Ok(images) => {
                // What was read writes back to a CSV that reads the same.
                let again = parse_csv(path, &images_to_csv(&images));
                prop_assert!(again.is_ok(), "{again:?}");
                let again = again.unwrap_or_default();
                prop_assert_eq!(again.len(), images.len());
            }
            Err(glancesync_core::Error::Csv { file, line, message }) => {
                prop_assert_eq!(file, path);
                prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}: {message}");
            }
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }

    #[test]
    fn any_config_loads_or_names_the_file_and_never_the_password((text, _pw_line) in config_text()) {
        let result = GlanceSyncConfig::load(
            &ConfigSource::Text { name: "/etc/glancesync.conf".into(), text },
            &LoadOptions { overrides: vec![], require_credentials: true },
            &|_: &str| None,
        );
        match result {
            Ok(config) => {
                let debug = format!("{config:?}");
                prop_assert!(!debug.contains(PASSWORD));
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("/etc/glancesync.conf"), "{shown}");
                prop_assert!(!shown.contains(PASSWORD) && !shown.contains("Zx"), "{shown}");
                let debug = format!("{e:?}");
                prop_assert!(!debug.contains(PASSWORD), "{debug}");
            }
        }
    }
}

/// The CSV backend reads region files the same way: a malformed file in a
/// `csv:DIR` is an error naming it and its line, not a panic.
#[test]
fn csv_backend_names_the_bad_file_and_line() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let good = "RegionOne,a,1,active,1,,t,True,{}\n";
    let bad = "RegionTwo,a,1,active,1,,t,True,{}\nRegionTwo,b,2,active,notanumber,,t,True,{}\n";
    for (name, text) in [
        ("backup_RegionOne.csv", good),
        ("backup_RegionTwo.csv", bad),
    ] {
        if let Err(e) = std::fs::write(dir.path().join(name), text) {
            panic!("write: {e}");
        }
    }
    let e = match glancesync_core::csv_backend::load_dir(dir.path()) {
        Ok(_) => panic!("a malformed region file was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("backup_RegionTwo.csv:2:"), "{e}");
}
