//! A minimal QMP (QEMU Machine Protocol) client: JSON objects, one per line,
//! over the VM's unix socket. QEMU greets first; `qmp_capabilities` must be
//! the first command; asynchronous events may arrive between a command and
//! its answer and are skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// One message received from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting sent on connect (`{"QMP": {"version": ...}}`).
    Greeting {
        /// `major.minor.micro` of QEMU.
        version: String,
    },
    /// A successful answer (`{"return": ...}`).
    Return(Value),
    /// A failed answer (`{"error": {"class": ..., "desc": ...}}`).
    Error {
        /// Error class.
        class: String,
        /// Description.
        desc: String,
    },
    /// An asynchronous event (`{"event": "POWERDOWN", ...}`).
    Event {
        /// Event name.
        name: String,
    },
}

/// Parse one line QEMU sent. The error names what is wrong with it.
pub fn parse_message(line: &str) -> std::result::Result<Message, String> {
    let v: Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("not JSON ({e}): {}", excerpt(line)))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {}", excerpt(line)))?;
    if let Some(r) = obj.get("return") {
        return Ok(Message::Return(r.clone()));
    }
    if let Some(e) = obj.get("error") {
        let field = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or("<missing>")
                .to_string()
        };
        return Ok(Message::Error {
            class: field("class"),
            desc: field("desc"),
        });
    }
    if let Some(name) = obj.get("event") {
        let name = name
            .as_str()
            .ok_or_else(|| format!("event name is not a string: {}", excerpt(line)))?;
        return Ok(Message::Event {
            name: name.to_string(),
        });
    }
    if let Some(q) = obj.get("QMP") {
        let ver = &q["version"]["qemu"];
        let num = |k: &str| ver.get(k).and_then(Value::as_u64).unwrap_or(0);
        return Ok(Message::Greeting {
            version: format!("{}.{}.{}", num("major"), num("minor"), num("micro")),
        });
    }
    Err(format!(
        "neither return, error, event nor greeting: {}",
        excerpt(line)
    ))
}

/// The line that executes `command` (without arguments).
pub fn command_line(command: &str) -> String {
    let mut s = serde_json::json!({ "execute": command }).to_string();
    s.push('\n');
    s
}

fn excerpt(line: &str) -> String {
    let t = line.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

/// A connected QMP session in command mode.
#[derive(Debug)]
pub struct QmpClient {
    socket: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
    /// QEMU's version from the greeting.
    pub version: String,
}

impl QmpClient {
    /// Connect to `socket`, read the greeting and negotiate capabilities.
    /// Every read waits at most `timeout`.
    #[tracing::instrument(skip_all, fields(socket = %socket.display()))]
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<QmpClient> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
            .await
            .map_err(|_| qmp_err(socket, format!("connect timed out after {timeout:?}")))?
            .map_err(|e| qmp_err(socket, format!("connect: {e}")))?;
        let (r, w) = stream.into_split();
        let mut c = QmpClient {
            socket: socket.to_path_buf(),
            reader: BufReader::new(r),
            writer: w,
            timeout,
            version: String::new(),
        };
        match c.read_message().await? {
            Some(Message::Greeting { version }) => c.version = version,
            Some(other) => {
                return Err(qmp_err(
                    socket,
                    format!("expected the greeting, got {other:?}"),
                ))
            }
            None => return Err(qmp_err(socket, "closed before the greeting".into())),
        }
        c.execute("qmp_capabilities").await?;
        tracing::debug!(version = %c.version, "QMP ready");
        Ok(c)
    }

    /// Read the next message; `None` when QEMU closed the socket.
    async fn read_message(&mut self) -> Result<Option<Message>> {
        let mut line = String::new();
        let n = tokio::time::timeout(self.timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| qmp_err(&self.socket, format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| qmp_err(&self.socket, format!("read: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        parse_message(&line)
            .map(Some)
            .map_err(|r| qmp_err(&self.socket, r))
    }

    /// Execute `command` (no arguments) and return its `return` value.
    /// Events received meanwhile are logged and skipped.
    pub async fn execute(&mut self, command: &str) -> Result<Value> {
        self.send(command).await?;
        self.answer(command).await
    }

    /// Execute `command` with `arguments` (a JSON object) and return its
    /// `return` value.
    pub async fn execute_with(&mut self, command: &str, arguments: Value) -> Result<Value> {
        tracing::debug!(command, %arguments, "QMP command");
        let mut line =
            serde_json::json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| qmp_err(&self.socket, format!("send `{command}`: {e}")))?;
        self.answer(command).await
    }

    /// Read until the answer to `command`, skipping events.
    async fn answer(&mut self, command: &str) -> Result<Value> {
        loop {
            match self.read_message().await? {
                Some(Message::Return(v)) => return Ok(v),
                Some(Message::Error { class, desc }) => {
                    return Err(Error::QmpCommand {
                        command: command.to_string(),
                        class,
                        desc,
                    })
                }
                Some(Message::Event { name }) => tracing::debug!(event = %name, "QMP event"),
                Some(Message::Greeting { .. }) => {
                    return Err(qmp_err(&self.socket, "unexpected second greeting".into()))
                }
                None => {
                    return Err(qmp_err(
                        &self.socket,
                        format!("closed before answering `{command}`"),
                    ))
                }
            }
        }
    }

    /// Send `quit`: QEMU may close the socket before answering, which counts as success.
    pub async fn quit(&mut self) -> Result<()> {
        self.send("quit").await?;
        loop {
            match self.read_message().await {
                Ok(Some(Message::Return(_))) | Ok(None) => return Ok(()),
                Ok(Some(Message::Error { class, desc })) => {
                    return Err(Error::QmpCommand {
                        command: "quit".into(),
                        class,
                        desc,
                    })
                }
                Ok(Some(_)) => {}
                // A reset connection also means QEMU is going away.
                Err(Error::Qmp { reason, .. }) if reason.starts_with("read:") => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn send(&mut self, command: &str) -> Result<()> {
        tracing::debug!(command, "QMP command");
        self.writer
            .write_all(command_line(command).as_bytes())
            .await
            .map_err(|e| qmp_err(&self.socket, format!("send `{command}`: {e}")))
    }
}

fn qmp_err(socket: &Path, reason: String) -> Error {
    Error::Qmp {
        socket: socket.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": "Debian 1:10.0"}, "capabilities": ["oob"]}}"#;

    #[test]
    fn parses_every_kind_of_message() {
        assert_eq!(
            parse_message(GREETING).unwrap(),
            Message::Greeting {
                version: "10.0.0".into()
            }
        );
        assert_eq!(
            parse_message("{\"return\": {}}\r\n").unwrap(),
            Message::Return(serde_json::json!({}))
        );
        assert_eq!(
            parse_message(r#"{"return": {"status": "running", "running": true}}"#).unwrap(),
            Message::Return(serde_json::json!({"status": "running", "running": true}))
        );
        assert_eq!(
            parse_message(
                r#"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#
            )
            .unwrap(),
            Message::Error {
                class: "CommandNotFound".into(),
                desc: "The command nope has not been found".into()
            }
        );
        assert_eq!(
            parse_message(
                r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}"#
            )
            .unwrap(),
            Message::Event {
                name: "POWERDOWN".into()
            }
        );
    }

    #[test]
    fn rejects_garbage_with_the_line_in_the_reason() {
        let e = parse_message("hello").unwrap_err();
        assert!(e.contains("not JSON") && e.contains("hello"), "{e}");
        let e = parse_message("[1, 2]").unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = parse_message(r#"{"something": 1}"#).unwrap_err();
        assert!(e.contains("neither return"), "{e}");
        let e = parse_message(r#"{"event": 3}"#).unwrap_err();
        assert!(e.contains("event name"), "{e}");
        let long = "x".repeat(1000);
        assert!(parse_message(&long).unwrap_err().len() < 300);
    }

    #[test]
    fn command_lines_are_one_json_object_per_line() {
        assert_eq!(
            command_line("system_powerdown"),
            "{\"execute\":\"system_powerdown\"}\n"
        );
    }

    /// A scripted fake QEMU: greets, then answers each received line with the
    /// next scripted lines. Returns the commands it received.
    async fn fake_qemu(listener: UnixListener, answers: Vec<Vec<&'static str>>) -> Vec<String> {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut r = tokio::io::BufReader::new(r);
        w.write_all(format!("{GREETING}\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        for lines in answers {
            let mut cmd = String::new();
            if r.read_line(&mut cmd).await.unwrap() == 0 {
                break;
            }
            got.push(cmd.trim().to_string());
            for l in lines {
                w.write_all(format!("{l}\n").as_bytes()).await.unwrap();
            }
        }
        got
    }

    #[tokio::test]
    async fn negotiates_skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(fake_qemu(
            listener,
            vec![
                vec![r#"{"return": {}}"#],
                vec![
                    r#"{"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 0}}"#,
                    r#"{"return": {}}"#,
                ],
                vec![r#"{"error": {"class": "GenericError", "desc": "nope"}}"#],
                vec![],
            ],
        ));
        let mut c = QmpClient::connect(&sock, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(c.version, "10.0.0");
        assert_eq!(
            c.execute("system_powerdown").await.unwrap(),
            serde_json::json!({})
        );
        let e = c.execute("bogus").await.unwrap_err();
        assert!(
            matches!(&e, Error::QmpCommand { command, class, desc }
                if command == "bogus" && class == "GenericError" && desc == "nope"),
            "{e}"
        );
        // The fake closes the socket without answering quit: still a success.
        c.quit().await.unwrap();
        let got = server.await.unwrap();
        assert_eq!(
            got,
            vec![
                r#"{"execute":"qmp_capabilities"}"#,
                r#"{"execute":"system_powerdown"}"#,
                r#"{"execute":"bogus"}"#,
                r#"{"execute":"quit"}"#,
            ]
        );
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let e = QmpClient::connect(&sock, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("qmp.sock"), "{e}");
        let _listener = UnixListener::bind(&sock).unwrap();
        let e = QmpClient::connect(&sock, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no answer within"), "{e}");
    }
}
