//! Tokens of a condition: names, string and number literals, operators.

use super::CompileError;
use crate::pyvalue::PyValue;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Name(String),
    Str(String),
    Num(PyValue),
    Op(&'static str),
}

pub(super) fn tokenize(src: &str) -> Result<Vec<Tok>, CompileError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'\\' if matches!(b.get(i + 1), Some(b'\n')) => i += 2,
            b'\\' if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') => i += 3,
            b'#' => {
                return Err(CompileError("comments ('#') are not supported".into()));
            }
            b'\'' | b'"' => {
                let (s, n) = lex_string(&src[i..])?;
                out.push(Tok::Str(s));
                i += n;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
                let v = crate::pyvalue::parse_literal(&src[start..i])
                    .map_err(|_| CompileError(format!("invalid number '{}'", &src[start..i])))?;
                out.push(Tok::Num(v));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &src[start..i];
                if i < b.len()
                    && (b[i] == b'\'' || b[i] == b'"')
                    && matches!(
                        word.to_ascii_lowercase().as_str(),
                        "u" | "r" | "b" | "ur" | "br" | "rb"
                    )
                {
                    let (s, n) = lex_string(&src[start..])?;
                    out.push(Tok::Str(s));
                    i = start + n;
                } else {
                    out.push(Tok::Name(word.to_string()));
                }
            }
            _ => {
                const OPS: &[&str] = &[
                    "==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":",
                    "-", "+", "*", "/", "%", "&", "|", "^", "~", "=", "@", "`", ";",
                ];
                let rest = &src[i..];
                match OPS.iter().find(|op| rest.starts_with(**op)) {
                    Some(op) => {
                        out.push(Tok::Op(op));
                        i += op.len();
                    }
                    None => {
                        let ch = rest.chars().next().unwrap_or('?');
                        return Err(CompileError(format!("unexpected character '{ch}'")));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn lex_string(s: &str) -> Result<(String, usize), CompileError> {
    // Find the end of one string literal (with prefix) and parse it with the literal parser.
    let b = s.as_bytes();
    let mut i = 0;
    let mut raw = false;
    while i < b.len() && b[i].is_ascii_alphabetic() {
        if b[i].eq_ignore_ascii_case(&b'r') {
            raw = true;
        }
        i += 1;
    }
    let q = b
        .get(i)
        .copied()
        .ok_or_else(|| CompileError("unterminated string".into()))?;
    let triple = b.get(i..i + 3) == Some(&[q, q, q][..]);
    let mut j = i + if triple { 3 } else { 1 };
    loop {
        let Some(&c) = b.get(j) else {
            return Err(CompileError("unterminated string literal".into()));
        };
        if c == b'\\' && !raw {
            j += 2;
            continue;
        }
        if c == b'\\' && raw {
            j += 2;
            continue;
        }
        if c == q {
            if triple {
                if b.get(j..j + 3) == Some(&[q, q, q][..]) {
                    j += 3;
                    break;
                }
            } else {
                j += 1;
                break;
            }
        }
        j += 1;
    }
    match crate::pyvalue::parse_literal(&s[..j]) {
        Ok(PyValue::Str(v)) => Ok((v, j)),
        _ => Err(CompileError(format!("invalid string literal {}", &s[..j]))),
    }
}
