//! himlarcli's `Printer`: `--format text|json|csv` (`table` is refused, as
//! the original refuses it for these actions).
//!
//! Text: a header is a line of 80 `=`, two spaces and the title, another
//! line of `=`; a one-line record prints its values in key order separated
//! by spaces; any other record prints `key = value` lines (lists as
//! `key =` and indented items). JSON: every record is an object (sorted
//! keys, two-space indent), headers are dropped. CSV: one row per record.

use std::io::Write;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The original's text.
    #[default]
    Text,
    /// JSON objects.
    Json,
    /// CSV rows.
    Csv,
    /// PrettyTable (not supported by these actions).
    Table,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "table" => Ok(Format::Table),
            other => Err(Error::Refused(format!(
                "unknown format {other} (text, table, json, csv)"
            ))),
        }
    }
}

/// Writes records in one format to a writer (standard output in the tool).
#[derive(Debug)]
pub struct Printer<W: Write> {
    format: Format,
    out: W,
}

impl Printer<std::io::Stdout> {
    /// A printer on standard output; `table` is refused here.
    pub fn stdout(format: Format) -> Result<Self> {
        Printer::new(format, std::io::stdout())
    }
}

impl<W: Write> Printer<W> {
    /// A printer on `out`.
    pub fn new(format: Format, out: W) -> Result<Self> {
        if format == Format::Table {
            return Err(Error::Refused(
                "Table output not supported for this action".into(),
            ));
        }
        Ok(Printer { format, out })
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn io(&mut self, r: std::io::Result<()>) -> Result<()> {
        r.map_err(|source| Error::Io {
            path: "(standard output)".into(),
            source,
        })
    }

    /// A section header (text only).
    pub fn header(&mut self, title: &str) -> Result<()> {
        if self.format != Format::Text {
            return Ok(());
        }
        let bar = "=".repeat(80);
        let r = writeln!(self.out, "{bar}\n  {title:<76}\n{bar}");
        self.io(r)
    }

    /// A record: `fields` in key order.
    pub fn record(&mut self, fields: &[(&str, Value)], one_line: bool) -> Result<()> {
        let mut sorted: Vec<&(&str, Value)> = fields.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let r = match self.format {
            Format::Text => {
                let mut text = String::new();
                let mut line = Vec::new();
                for (k, v) in &sorted {
                    match v {
                        Value::Array(items) => {
                            text.push_str(&format!("{k} =\n"));
                            for i in items {
                                text.push_str(&format!("  {}\n", plain(i)));
                            }
                        }
                        other if one_line => line.push(plain(other)),
                        other => text.push_str(&format!("{k} = {}\n", plain(other))),
                    }
                }
                if !line.is_empty() {
                    text.push_str(&line.join(" "));
                    text.push('\n');
                }
                write!(self.out, "{text}")
            }
            Format::Json => {
                let map: Map<String, Value> = sorted
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                let text = serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default();
                writeln!(self.out, "{text}")
            }
            Format::Csv | Format::Table => {
                let row: Vec<String> = sorted.iter().map(|(_, v)| csv_cell(&plain(v))).collect();
                writeln!(self.out, "{}", row.join(","))
            }
        };
        self.io(r)
    }

    /// A message (the original's `output_msg`).
    pub fn msg(&mut self, msg: &str) -> Result<()> {
        let r = match self.format {
            Format::Text => writeln!(self.out, "\n{msg}\n"),
            Format::Json => writeln!(
                self.out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "message": msg }))
                    .unwrap_or_default()
            ),
            Format::Csv | Format::Table => writeln!(self.out, "{msg};"),
        };
        self.io(r)
    }

    /// Any serialisable value as pretty JSON (plans in `--format json`).
    pub fn json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Refused(format!("cannot serialise the output: {e}")))?;
        let r = writeln!(self.out, "{text}");
        self.io(r)
    }

    /// Plain lines (plans in text).
    pub fn lines(&mut self, lines: &[String]) -> Result<()> {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let r = write!(self.out, "{text}");
        self.io(r)
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(f: impl FnOnce(&mut Printer<Vec<u8>>)) -> String {
        let mut p = Printer::new(Format::Text, Vec::new()).unwrap();
        f(&mut p);
        String::from_utf8(p.into_inner()).unwrap()
    }

    #[test]
    fn text_layout_is_the_originals() {
        let out = text(|p| {
            p.header("Image count").unwrap();
            p.record(&[("count", json!(3))], false).unwrap();
            p.record(
                &[
                    ("name", json!("GOLD X")),
                    ("id", json!("i1")),
                    ("count", json!(0)),
                ],
                true,
            )
            .unwrap();
            p.record(
                &[("tags", json!(["gold", "x"])), ("id", json!("i1"))],
                false,
            )
            .unwrap();
        });
        let bar = "=".repeat(80);
        assert_eq!(
            out,
            format!("{bar}\n  Image count{}\n{bar}\ncount = 3\n0 i1 GOLD X\nid = i1\ntags =\n  gold\n  x\n", " ".repeat(65))
        );
    }

    #[test]
    fn json_drops_headers_and_table_is_refused() {
        let mut p = Printer::new(Format::Json, Vec::new()).unwrap();
        p.header("h").unwrap();
        p.record(&[("b", json!(1)), ("a", json!("x"))], true)
            .unwrap();
        let s = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(s, "{\n  \"a\": \"x\",\n  \"b\": 1\n}\n");
        assert!(Printer::new(Format::Table, Vec::new()).is_err());
    }
}
