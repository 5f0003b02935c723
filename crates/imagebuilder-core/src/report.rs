//! The JSONL build report NREC's monitoring reads
//! (`<log_dir>/<name>-report.jsonl`), written when `IMAGEBUILDER_REPORT`
//! is `true`: `{"result_imagebuilder":"<exit code>"}`, then
//! `{"output_imagebuilder":"<log, lines ended by a literal \n>"}` (the
//! file is overwritten by these two), then `{"result":"success"}` or
//! `{"result":"failed"}` appended.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};

/// Where the report and the plain log go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportPaths {
    /// `<dir>/<name>-report.jsonl`.
    pub report: PathBuf,
    /// `<dir>/<name>-build-YYYYMMDD.log`.
    pub log: PathBuf,
}

impl ReportPaths {
    /// The paths of image `name` built on `date` under `dir`.
    pub fn new(dir: &Path, name: &str, date: &str) -> Self {
        ReportPaths {
            report: dir.join(format!("{name}-report.jsonl")),
            log: dir.join(format!("{name}-build-{date}.log")),
        }
    }
}

/// Is reporting on? (`IMAGEBUILDER_REPORT` is exactly `true`, as the
/// build script's `[ $gen_report == "true" ]`.)
pub fn enabled_from(value: Option<&str>) -> bool {
    value == Some("true")
}

/// The log as one value: every line followed by a literal `\n`
/// (`awk '{printf "%s\\n", $0}'`).
pub fn flatten_log(log: &str) -> String {
    let mut s = String::new();
    for line in log.lines() {
        s.push_str(line);
        s.push_str("\\n");
    }
    s
}

/// Overwrite `report` with the exit code and the log's text.
pub fn write_start(report: &Path, exit_code: i32, log: &str) -> Result<()> {
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    let text = format!(
        "{}\n{}\n",
        serde_json::json!({ "result_imagebuilder": exit_code.to_string() }),
        serde_json::json!({ "output_imagebuilder": flatten_log(log) })
    );
    std::fs::write(report, text).map_err(io_err("writing report", report))
}

/// Append `{"result":"success"}` or `{"result":"failed"}`.
pub fn append_result(report: &Path, success: bool) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .map_err(io_err("opening report", report))?;
    let line = serde_json::json!({ "result": if success { "success" } else { "failed" } });
    writeln!(f, "{line}").map_err(io_err("writing report", report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_what_jq_writes() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("x-report.jsonl");
        std::fs::write(&r, "old\n").unwrap();
        write_start(&r, 0, "line one\nsays \"hi\"\n").unwrap();
        append_result(&r, true).unwrap();
        let text = std::fs::read_to_string(&r).unwrap();
        assert_eq!(
            text,
            "{\"result_imagebuilder\":\"0\"}\n{\"output_imagebuilder\":\"line one\\\\nsays \\\"hi\\\"\\\\n\"}\n{\"result\":\"success\"}\n"
        );
        assert!(enabled_from(Some("true")));
        assert!(!enabled_from(Some("True")));
        assert!(!enabled_from(None));
    }
}
