//! Property tests: arbitrary text read in either dialect gives a document or
//! an error naming the file and a line of it, never a panic; no error ever
//! shows the value of a `password` option, whatever it holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ini_config::{Dialect, Error, Ini};
use proptest::prelude::*;

const DIALECTS: [Dialect; 2] = [Dialect::PYTHON2_SAFE, Dialect::PYTHON3_RAW_STRICT];
const FILE: &str = "/etc/prop.conf";
/// A password no generated line can hold by chance (generated text has no `Q`).
const PASSWORD: &str = "Q%pw%(QQ)s;Q";

/// One line of INI-like text: headers, options, comments, continuations,
/// interpolations and junk.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\[[a-zA-P ]{0,6}\\]?",
        "[a-z_]{0,6} ?[=:] ?[a-z0-9%();\" ]{0,12}",
        "[ \t]{1,3}[a-z0-9%()]{0,8}",
        "[#;][a-z ]{0,8}",
        Just(String::new()),
        Just("[DEFAULT]".to_string()),
        Just("x = %(y)s".to_string()),
        Just("y = %(x)s".to_string()),
        "[^Q\n]{0,16}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..12).prop_map(|lines| lines.join("\n"))
}

fn check_error(e: &Error, lines: usize) {
    let text = e.to_string();
    assert!(
        text.starts_with(FILE),
        "error does not name the file: {text}"
    );
    assert!(!text.contains(PASSWORD) && !text.contains("QQ"), "{text}");
    match e {
        Error::Syntax { line, .. } => assert!(*line >= 1 && *line <= lines, "{text}"),
        Error::Option { line, .. } => assert!(*line <= lines, "{text}"),
        other => panic!("unexpected error kind: {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_text_reads_or_names_file_and_line(doc in document()) {
        let lines = doc.split('\n').count();
        for dialect in DIALECTS {
            match Ini::parse(FILE, &doc, dialect) {
                Ok(ini) => {
                    let sections: Vec<String> = ini.sections().map(String::from).collect();
                    for s in sections.iter().map(String::as_str).chain(["DEFAULT"]) {
                        for o in ["a", "x", "y", "password", "k"] {
                            for r in [
                                ini.get(s, o).map(|_| ()),
                                ini.get_bool(s, o).map(|_| ()),
                                ini.get_int(s, o).map(|_| ()),
                            ] {
                                if let Err(e) = r {
                                    check_error(&e, lines);
                                }
                            }
                        }
                    }
                }
                Err(e) => check_error(&e, lines),
            }
        }
    }

    #[test]
    fn a_password_never_reaches_an_error(
        before in document(),
        after in document(),
        spot in 0usize..3,
    ) {
        // The password as an option, as a malformed line and as a header.
        let planted = match spot {
            0 => format!("[sec]\npassword = {PASSWORD}"),
            1 => PASSWORD.to_string(),
            _ => format!("[{PASSWORD}"),
        };
        let doc = format!("{before}\n{planted}\n{after}");
        let lines = doc.split('\n').count();
        for dialect in DIALECTS {
            match Ini::parse(FILE, &doc, dialect) {
                Ok(ini) => {
                    for s in ["sec", "DEFAULT"] {
                        if let Err(e) = ini.get(s, "password") {
                            check_error(&e, lines);
                        }
                        if let Err(e) = ini.get_bool(s, "password") {
                            check_error(&e, lines);
                        }
                    }
                    let debug = format!("{ini:?}");
                    prop_assert!(!debug.contains(PASSWORD));
                }
                Err(e) => check_error(&e, lines),
            }
        }
    }
}
