//! Python literal values: the user-properties dict of CSV column 9 and the
//! values the `metadata_condition` evaluator works on.
//!
//! Parsing accepts what Python's `eval` accepts for literals in existing
//! backups (strings with optional `u`/`b`/`r` prefixes, ints, floats, bools,
//! `None`, lists, tuples, dicts, sets); `repr` prints them as Python 3 does.

use std::fmt::Write as _;

use indexmap::IndexMap;

use crate::error::{Error, Result};

/// A Python value.
#[derive(Debug, Clone)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A list.
    List(Vec<PyValue>),
    /// A tuple.
    Tuple(Vec<PyValue>),
    /// A dict (insertion-ordered, keys unique by Python equality).
    Dict(Vec<(PyValue, PyValue)>),
    /// A set (insertion-ordered, unique by Python equality).
    Set(Vec<PyValue>),
}

/// User properties of an image: property name → value, insertion-ordered.
pub type Properties = IndexMap<String, PyValue>;

impl PartialEq for PyValue {
    fn eq(&self, other: &Self) -> bool {
        py_eq(self, other)
    }
}

/// Python `==`.
pub fn py_eq(a: &PyValue, b: &PyValue) -> bool {
    use PyValue as V;
    match (a, b) {
        (V::None, V::None) => true,
        (V::Str(x), V::Str(y)) => x == y,
        (V::List(x), V::List(y)) | (V::Tuple(x), V::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (V::Dict(x), V::Dict(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| py_eq(k, k2))
                        .is_some_and(|(_, v2)| py_eq(v, v2))
                })
        }
        (V::Set(x), V::Set(y)) => {
            x.len() == y.len() && x.iter().all(|e| y.iter().any(|f| py_eq(e, f)))
        }
        _ => match (a.as_number(), b.as_number()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

impl PyValue {
    /// Numeric value of bools, ints and floats.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            PyValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            #[allow(clippy::cast_precision_loss)]
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(b) => *b,
            PyValue::Int(i) => *i != 0,
            PyValue::Float(f) => *f != 0.0,
            PyValue::Str(s) => !s.is_empty(),
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) => !v.is_empty(),
            PyValue::Dict(v) => !v.is_empty(),
        }
    }

    /// Python type name (for error messages).
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Dict(_) => "dict",
            PyValue::Set(_) => "set",
        }
    }

    /// Python `repr()`.
    pub fn repr(&self) -> String {
        let mut s = String::new();
        self.write_repr(&mut s);
        s
    }

    fn write_repr(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("None"),
            PyValue::Bool(true) => out.push_str("True"),
            PyValue::Bool(false) => out.push_str("False"),
            PyValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyValue::Float(f) => out.push_str(&float_repr(*f)),
            PyValue::Str(s) => out.push_str(&str_repr(s)),
            PyValue::List(v) => seq_repr(out, "[", "]", v),
            PyValue::Tuple(v) => {
                if v.len() == 1 {
                    out.push('(');
                    v[0].write_repr(out);
                    out.push_str(",)");
                } else {
                    seq_repr(out, "(", ")", v);
                }
            }
            PyValue::Set(v) => {
                if v.is_empty() {
                    out.push_str("set()");
                } else {
                    seq_repr(out, "{", "}", v);
                }
            }
            PyValue::Dict(v) => {
                out.push('{');
                for (i, (k, val)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_repr(out);
                    out.push_str(": ");
                    val.write_repr(out);
                }
                out.push('}');
            }
        }
    }

    /// Python `str()`: like `repr` except that a str is printed bare.
    pub fn to_py_str(&self) -> String {
        match self {
            PyValue::Str(s) => s.clone(),
            other => other.repr(),
        }
    }

    /// Convert a JSON value (a Glance property) to a Python value.
    pub fn from_json(v: &serde_json::Value) -> PyValue {
        match v {
            serde_json::Value::Null => PyValue::None,
            serde_json::Value::Bool(b) => PyValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => PyValue::Int(i),
                None => PyValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => PyValue::Str(s.clone()),
            serde_json::Value::Array(a) => {
                PyValue::List(a.iter().map(PyValue::from_json).collect())
            }
            serde_json::Value::Object(o) => PyValue::Dict(
                o.iter()
                    .map(|(k, v)| (PyValue::Str(k.clone()), PyValue::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The string Glance stores for this value (Glance v2 properties are strings).
    pub fn to_glance_string(&self) -> String {
        self.to_py_str()
    }

    /// The JSON form of this value (for plans and `--output json`): `None` is
    /// `null`, lists, tuples and sets are arrays, dict keys are their `str()`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            PyValue::None => Value::Null,
            PyValue::Bool(b) => Value::Bool(*b),
            PyValue::Int(i) => Value::from(*i),
            PyValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            PyValue::Str(s) => Value::String(s.clone()),
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) => {
                Value::Array(v.iter().map(PyValue::to_json).collect())
            }
            PyValue::Dict(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.to_py_str(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl serde::Serialize for PyValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(PyValue::from_json(&v))
    }
}

fn seq_repr(out: &mut String, open: &str, close: &str, v: &[PyValue]) {
    out.push_str(open);
    for (i, e) in v.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        e.write_repr(out);
    }
    out.push_str(close);
}

/// Python 3 `repr()` of a float.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Scientific notation as Python prints it: 1e+20, 1.5e-05.
        let s = format!("{f:e}");
        if let Some((mant, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{mant}e{sign}{digits:0>2}");
        }
        return s;
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// Python 3 `repr()` of a str.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Parse a Python literal expression (as CSV column 9 holds).
pub fn parse_literal(text: &str) -> Result<PyValue> {
    let mut p = LitParser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected trailing characters"));
    }
    Ok(v)
}

/// Parse CSV column 9: a Python dict literal of string keys.
///
/// An empty or blank field is an empty dict (as `dict()` gives).
pub fn parse_properties(text: &str) -> Result<Properties> {
    if text.trim().is_empty() {
        return Ok(Properties::new());
    }
    match parse_literal(text)? {
        PyValue::Dict(items) => {
            let mut out = Properties::with_capacity(items.len());
            for (k, v) in items {
                match k {
                    PyValue::Str(k) => {
                        out.insert(k, v);
                    }
                    other => {
                        return Err(Error::PyLiteral {
                            offset: 0,
                            message: format!(
                                "property names must be strings, found {}",
                                other.repr()
                            ),
                        })
                    }
                }
            }
            Ok(out)
        }
        other => Err(Error::PyLiteral {
            offset: 0,
            message: format!("expected a dict literal, found a {}", other.type_name()),
        }),
    }
}

/// Python `repr()` of a properties dict (CSV column 9).
pub fn properties_repr(props: &Properties) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&str_repr(k));
        out.push_str(": ");
        v.write_repr(&mut out);
    }
    out.push('}');
    out
}

struct LitParser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl LitParser<'_> {
    fn err(&self, message: &str) -> Error {
        Error::PyLiteral {
            offset: self.pos,
            message: message.to_string(),
        }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'\\' if self.s.get(self.pos + 1) == Some(&b'\n') => self.pos += 2,
                _ => break,
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self) -> Result<PyValue> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end of literal"));
        };
        match c {
            b'{' => self.dict_or_set(),
            b'[' => {
                self.pos += 1;
                Ok(PyValue::List(self.items(b']')?))
            }
            b'(' => {
                self.pos += 1;
                let (items, trailing_comma) = self.items_with_comma(b')')?;
                if items.len() == 1 && !trailing_comma {
                    Ok(items.into_iter().next().unwrap_or(PyValue::None))
                } else {
                    Ok(PyValue::Tuple(items))
                }
            }
            b'\'' | b'"' => self.strings(),
            b'-' | b'+' | b'0'..=b'9' | b'.' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.pos += 1;
                }
                let word = &self.text[start..self.pos];
                if matches!(self.peek(), Some(b'\'' | b'"'))
                    && matches!(
                        word.to_ascii_lowercase().as_str(),
                        "u" | "b" | "r" | "ur" | "br" | "rb"
                    )
                {
                    self.pos = start;
                    return self.strings();
                }
                match word {
                    "None" => Ok(PyValue::None),
                    "True" => Ok(PyValue::Bool(true)),
                    "False" => Ok(PyValue::Bool(false)),
                    _ => {
                        self.pos = start;
                        Err(self.err(&format!("unsupported name '{word}'")))
                    }
                }
            }
            _ => Err(self.err(&format!("unexpected character '{}'", c as char))),
        }
    }

    fn items(&mut self, close: u8) -> Result<Vec<PyValue>> {
        Ok(self.items_with_comma(close)?.0)
    }

    fn items_with_comma(&mut self, close: u8) -> Result<(Vec<PyValue>, bool)> {
        let mut out = Vec::new();
        let mut trailing = false;
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok((out, trailing));
            }
            out.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    trailing = true;
                }
                Some(c) if c == close => {
                    trailing = false;
                }
                _ => return Err(self.err(&format!("expected ',' or '{}'", close as char))),
            }
        }
    }

    fn dict_or_set(&mut self) -> Result<PyValue> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(PyValue::Dict(Vec::new()));
        }
        let first = self.value()?;
        self.skip_ws();
        if self.peek() == Some(b':') {
            self.pos += 1;
            let v = self.value()?;
            let mut items: Vec<(PyValue, PyValue)> = Vec::new();
            dict_insert(&mut items, first, v);
            loop {
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if self.peek() == Some(b'}') {
                            self.pos += 1;
                            return Ok(PyValue::Dict(items));
                        }
                        let k = self.value()?;
                        self.expect(b':')?;
                        let v = self.value()?;
                        dict_insert(&mut items, k, v);
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(PyValue::Dict(items));
                    }
                    _ => return Err(self.err("expected ',' or '}' in dict")),
                }
            }
        }
        let mut items = vec![first];
        self.skip_ws();
        if self.peek() == Some(b',') {
            self.pos += 1;
            items.extend(self.items(b'}')?);
        } else {
            self.expect(b'}')?;
        }
        let mut set: Vec<PyValue> = Vec::new();
        for i in items {
            if !set.iter().any(|e| py_eq(e, &i)) {
                set.push(i);
            }
        }
        Ok(PyValue::Set(set))
    }

    fn strings(&mut self) -> Result<PyValue> {
        // Adjacent string literals concatenate.
        let mut out = String::new();
        let mut any = false;
        loop {
            self.skip_ws();
            let start = self.pos;
            let mut raw = false;
            while let Some(c) = self.peek() {
                match c.to_ascii_lowercase() {
                    b'u' | b'b' => self.pos += 1,
                    b'r' => {
                        raw = true;
                        self.pos += 1;
                    }
                    _ => break,
                }
            }
            match self.peek() {
                Some(q @ (b'\'' | b'"')) => {
                    out.push_str(&self.string_body(q, raw)?);
                    any = true;
                }
                _ => {
                    self.pos = start;
                    if any {
                        return Ok(PyValue::Str(out));
                    }
                    return Err(self.err("expected a string"));
                }
            }
        }
    }

    fn string_body(&mut self, q: u8, raw: bool) -> Result<String> {
        let triple = self.s.get(self.pos..self.pos + 3) == Some(&[q, q, q][..]);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            if c == q {
                if !triple {
                    self.pos += 1;
                    return Ok(out);
                }
                if self.s.get(self.pos..self.pos + 3) == Some(&[q, q, q][..]) {
                    self.pos += 3;
                    return Ok(out);
                }
            }
            if c == b'\n' && !triple {
                return Err(self.err("newline in string"));
            }
            if c == b'\\' {
                let Some(n) = self.s.get(self.pos + 1).copied() else {
                    return Err(self.err("unterminated string"));
                };
                if raw {
                    out.push('\\');
                    out.push(n as char);
                    self.pos += 2;
                    continue;
                }
                self.pos += 2;
                match n {
                    b'\n' => {}
                    b'\\' => out.push('\\'),
                    b'\'' => out.push('\''),
                    b'"' => out.push('"'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'a' => out.push('\x07'),
                    b'b' => out.push('\x08'),
                    b'f' => out.push('\x0c'),
                    b'v' => out.push('\x0b'),
                    b'0' => out.push('\0'),
                    b'x' | b'u' | b'U' => {
                        let len = match n {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let hex = self
                            .text
                            .get(self.pos..self.pos + len)
                            .ok_or_else(|| self.err("truncated escape"))?;
                        let code =
                            u32::from_str_radix(hex, 16).map_err(|_| self.err("bad escape"))?;
                        out.push(char::from_u32(code).ok_or_else(|| self.err("bad escape"))?);
                        self.pos += len;
                    }
                    other => {
                        out.push('\\');
                        // Keep the byte; it may start a multi-byte char, so push via the text slice.
                        self.pos -= 1;
                        let ch = self.text[self.pos..]
                            .chars()
                            .next()
                            .unwrap_or(other as char);
                        out.push(ch);
                        self.pos += ch.len_utf8();
                    }
                }
                continue;
            }
            let ch = self.text[self.pos..]
                .chars()
                .next()
                .ok_or_else(|| self.err("bad utf-8"))?;
            out.push(ch);
            self.pos += ch.len_utf8();
        }
    }

    fn number(&mut self) -> Result<PyValue> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
            self.skip_ws();
        }
        let num_start = self.pos;
        while self.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric()
                || c == b'.'
                || c == b'_'
                || ((c == b'-' || c == b'+')
                    && matches!(self.s.get(self.pos.wrapping_sub(1)), Some(b'e' | b'E')))
        }) {
            self.pos += 1;
        }
        let body: String = self.text[num_start..self.pos]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        let neg = self.s[start] == b'-';
        let lower = body.to_ascii_lowercase();
        let lower = lower.trim_end_matches('l');
        let int = if let Some(h) = lower.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()
        } else if let Some(o) = lower.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()
        } else if let Some(b) = lower.strip_prefix("0b") {
            i64::from_str_radix(b, 2).ok()
        } else {
            lower.parse::<i64>().ok()
        };
        if let Some(i) = int {
            return Ok(PyValue::Int(if neg { -i } else { i }));
        }
        match lower.parse::<f64>() {
            Ok(f) if !lower.is_empty() => Ok(PyValue::Float(if neg { -f } else { f })),
            _ => {
                self.pos = start;
                Err(self.err(&format!("invalid number '{body}'")))
            }
        }
    }
}

fn dict_insert(items: &mut Vec<(PyValue, PyValue)>, k: PyValue, v: PyValue) {
    if let Some(slot) = items.iter_mut().find(|(k2, _)| py_eq(k2, &k)) {
        slot.1 = v;
    } else {
        items.push((k, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture_dicts() {
        let p = parse_properties("{'type': 'ngimages', 'nid': 1}").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["type"], PyValue::Str("ngimages".into()));
        assert_eq!(p["nid"], PyValue::Int(1));
        let p = parse_properties("{'type': 'other', 'k1' : 'value1'}").unwrap();
        assert_eq!(p["k1"], PyValue::Str("value1".into()));
        assert!(parse_properties("{}").unwrap().is_empty());
        assert!(parse_properties("").unwrap().is_empty());
    }

    #[test]
    fn parses_unicode_prefixes_and_types() {
        let p = parse_properties(
            "{u'a': u\"x'y\", 'b': True, 'c': None, 'd': -2.5, 'e': [1, (2,)], 'f': {'g': 1}}",
        )
        .unwrap();
        assert_eq!(p["a"], PyValue::Str("x'y".into()));
        assert_eq!(p["b"], PyValue::Bool(true));
        assert_eq!(p["c"], PyValue::None);
        assert_eq!(p["d"], PyValue::Float(-2.5));
        assert_eq!(p["e"].repr(), "[1, (2,)]");
        assert_eq!(p["f"].repr(), "{'g': 1}");
    }

    #[test]
    fn repr_round_trips() {
        let text = "{'type': 'ngimages', 'nid': 1, 'q': \"it's\", 'f': 1.0, 'n': None}";
        let p = parse_properties(text).unwrap();
        assert_eq!(properties_repr(&p), text);
        assert_eq!(parse_properties(&properties_repr(&p)).unwrap(), p);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_properties("{'a': foo}").is_err());
        assert!(parse_properties("[1, 2]").is_err());
        assert!(parse_properties("{'a': 1").is_err());
        assert!(parse_properties("{1: 2}").is_err());
    }

    #[test]
    fn python_equality() {
        assert_eq!(PyValue::Int(1), PyValue::Float(1.0));
        assert_eq!(PyValue::Bool(true), PyValue::Int(1));
        assert_ne!(PyValue::Int(1), PyValue::Str("1".into()));
        assert_eq!(float_repr(1e20), "1e+20");
        assert_eq!(float_repr(1024.0), "1024.0");
        assert_eq!(float_repr(0.5), "0.5");
    }
}
