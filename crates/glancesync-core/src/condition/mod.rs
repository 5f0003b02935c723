//! `metadata_condition`: the subset of Python expressions existing GlanceSync
//! configs use, compiled once at config load and evaluated per image.
//!
//! Supported: literals (str with `u`/`r`/`b` prefixes, int, float, `True`,
//! `False`, `None`, lists, tuples, dicts, sets), the names `image` and
//! `metadata_set`, attribute access on `image` (`name`, `id`, `region`,
//! `status`, `size`, `checksum`, `owner`, `is_public`, `user_properties`),
//! subscripts, the methods `.get()`, `.intersection()`, `.keys()`,
//! `.startswith()`, `.endswith()`, `in` / `not in`, `is` / `is not`,
//! comparisons (chained), `and` / `or` / `not`, parentheses and backslash
//! line continuations. Anything else is rejected when the config is loaded.

use crate::image::Image;
use crate::pyvalue::{py_eq, PyValue};

/// Image attributes a condition may read.
pub const IMAGE_ATTRIBUTES: &[&str] = &[
    "name",
    "id",
    "region",
    "status",
    "size",
    "checksum",
    "owner",
    "is_public",
    "user_properties",
];

const METHODS: &[&str] = &["get", "intersection", "keys", "startswith", "endswith"];

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    expr: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(PyValue),
    Image,
    MetadataSet,
    ImageAttr(String),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, String, Vec<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Set(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Neg(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num(PyValue),
    Op(&'static str),
}

/// The error of compiling a condition: names the unsupported construct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn tokenize(src: &str) -> Result<Vec<Tok>, CompileError> {
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

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("'{n}'"),
        Tok::Str(s) => crate::pyvalue::str_repr(s),
        Tok::Num(n) => n.repr(),
        Tok::Op(o) => format!("'{o}'"),
    }
}

fn op_construct(op: &str) -> String {
    match op {
        "+" | "-" | "*" | "/" | "%" | "@" => format!("arithmetic operator '{op}'"),
        "&" | "|" | "^" | "~" => format!("bitwise operator '{op}'"),
        "=" => "assignment '='".to_string(),
        ":" => "slice or lambda ':'".to_string(),
        o => format!("'{o}'"),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn peek_is_name(&self, n: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == n)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.peek_is_op(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), CompileError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected '{op}'")))
        }
    }

    fn unexpected(&self, context: &str) -> CompileError {
        match self.peek() {
            None => CompileError(format!("unexpected end of expression ({context})")),
            Some(Tok::Op(o)) if !matches!(*o, "(" | ")" | "[" | "]" | "{" | "}" | ",") => {
                CompileError(format!("unsupported construct: {}", op_construct(o)))
            }
            Some(Tok::Name(n)) if is_unsupported_keyword(n) => {
                CompileError(format!("unsupported construct: '{n}'"))
            }
            Some(t) => CompileError(format!("unexpected {} ({context})", describe(t))),
        }
    }

    fn expr(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.and_expr()?;
        while self.peek_is_name("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        if self.peek_is_name("if") {
            return Err(CompileError(
                "unsupported construct: conditional expression 'if ... else'".into(),
            ));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.not_expr()?;
        while self.peek_is_name("and") {
            self.pos += 1;
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, CompileError> {
        if self.peek_is_name("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, CompileError> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Op("==")) => CmpOp::Eq,
                Some(Tok::Op("!=")) => CmpOp::Ne,
                Some(Tok::Op("<")) => CmpOp::Lt,
                Some(Tok::Op("<=")) => CmpOp::Le,
                Some(Tok::Op(">")) => CmpOp::Gt,
                Some(Tok::Op(">=")) => CmpOp::Ge,
                Some(Tok::Name(n)) if n == "in" => CmpOp::In,
                Some(Tok::Name(n)) if n == "is" => {
                    if matches!(self.toks.get(self.pos + 1), Some(Tok::Name(x)) if x == "not") {
                        self.pos += 1;
                        CmpOp::IsNot
                    } else {
                        CmpOp::Is
                    }
                }
                Some(Tok::Name(n))
                    if n == "not"
                        && matches!(self.toks.get(self.pos + 1), Some(Tok::Name(x)) if x == "in") =>
                {
                    self.pos += 1;
                    CmpOp::NotIn
                }
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.unary()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Compare(Box::new(first), rest))
        }
    }

    fn unary(&mut self) -> Result<Expr, CompileError> {
        if self.peek_is_op("-") {
            self.pos += 1;
            if matches!(self.peek(), Some(Tok::Num(_))) {
                return Ok(Expr::Neg(Box::new(self.postfix()?)));
            }
            return Err(CompileError(
                "unsupported construct: arithmetic operator '-'".into(),
            ));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, CompileError> {
        let mut e = self.atom()?;
        loop {
            if self.eat_op(".") {
                let Some(Tok::Name(attr)) = self.peek().cloned() else {
                    return Err(self.unexpected("expected an attribute name after '.'"));
                };
                self.pos += 1;
                if self.peek_is_op("(") {
                    self.pos += 1;
                    if !METHODS.contains(&attr.as_str()) {
                        return Err(CompileError(format!(
                            "unsupported construct: method call .{attr}() (supported: {})",
                            METHODS
                                .iter()
                                .map(|m| format!(".{m}()"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    let args = self.call_args()?;
                    e = Expr::Call(Box::new(e), attr, args);
                } else {
                    if matches!(e, Expr::Image) && !IMAGE_ATTRIBUTES.contains(&attr.as_str()) {
                        return Err(CompileError(format!(
                            "unsupported construct: unknown image attribute 'image.{attr}' (known: {})",
                            IMAGE_ATTRIBUTES.join(", ")
                        )));
                    }
                    if !matches!(e, Expr::Image) {
                        return Err(CompileError(format!(
                            "unsupported construct: attribute '.{attr}'"
                        )));
                    }
                    e = Expr::ImageAttr(attr);
                }
            } else if self.eat_op("[") {
                let idx = self.expr()?;
                if self.peek_is_op(":") {
                    return Err(CompileError("unsupported construct: slice ':'".into()));
                }
                self.expect_op("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else if self.peek_is_op("(") {
                return Err(CompileError("unsupported construct: function call".into()));
            } else {
                return Ok(e);
            }
        }
    }

    fn call_args(&mut self) -> Result<Vec<Expr>, CompileError> {
        let mut args = Vec::new();
        loop {
            if self.eat_op(")") {
                return Ok(args);
            }
            if matches!(self.peek(), Some(Tok::Name(_)))
                && matches!(self.toks.get(self.pos + 1), Some(Tok::Op("=")))
            {
                return Err(CompileError(
                    "unsupported construct: keyword argument".into(),
                ));
            }
            if self.peek_is_op("*") {
                return Err(CompileError(
                    "unsupported construct: argument unpacking '*'".into(),
                ));
            }
            args.push(self.expr()?);
            if !self.eat_op(",") {
                self.expect_op(")")?;
                return Ok(args);
            }
        }
    }

    fn atom(&mut self) -> Result<Expr, CompileError> {
        let Some(t) = self.peek().cloned() else {
            return Err(CompileError("unexpected end of expression".into()));
        };
        self.pos += 1;
        match t {
            Tok::Str(mut s) => {
                while let Some(Tok::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.pos += 1;
                }
                Ok(Expr::Lit(PyValue::Str(s)))
            }
            Tok::Num(n) => Ok(Expr::Lit(n)),
            Tok::Name(n) => match n.as_str() {
                "image" => Ok(Expr::Image),
                "metadata_set" => Ok(Expr::MetadataSet),
                "True" => Ok(Expr::Lit(PyValue::Bool(true))),
                "False" => Ok(Expr::Lit(PyValue::Bool(false))),
                "None" => Ok(Expr::Lit(PyValue::None)),
                "lambda" => Err(CompileError("unsupported construct: 'lambda'".into())),
                other if is_unsupported_keyword(other) => {
                    Err(CompileError(format!("unsupported construct: '{other}'")))
                }
                other if self.peek_is_op("(") => Err(CompileError(format!(
                    "unsupported construct: function call {other}() (only image, metadata_set and literals may be used)"
                ))),
                other => Err(CompileError(format!(
                    "unsupported construct: unknown name '{other}' (only image, metadata_set and literals may be used)"
                ))),
            },
            Tok::Op("(") => {
                if self.eat_op(")") {
                    return Ok(Expr::Tuple(Vec::new()));
                }
                let first = self.expr()?;
                if self.peek_is_name("for") {
                    return Err(CompileError("unsupported construct: generator expression".into()));
                }
                if self.eat_op(")") {
                    return Ok(first);
                }
                let mut items = vec![first];
                while self.eat_op(",") {
                    if self.peek_is_op(")") {
                        break;
                    }
                    items.push(self.expr()?);
                }
                self.expect_op(")")?;
                Ok(Expr::Tuple(items))
            }
            Tok::Op("[") => Ok(Expr::List(self.seq("]")?)),
            Tok::Op("{") => {
                if self.eat_op("}") {
                    return Ok(Expr::Dict(Vec::new()));
                }
                let first = self.expr()?;
                if self.eat_op(":") {
                    let v = self.expr()?;
                    let mut items = vec![(first, v)];
                    while self.eat_op(",") {
                        if self.peek_is_op("}") {
                            break;
                        }
                        let k = self.expr()?;
                        self.expect_op(":")?;
                        items.push((k, self.expr()?));
                    }
                    self.expect_op("}")?;
                    Ok(Expr::Dict(items))
                } else {
                    let mut items = vec![first];
                    while self.eat_op(",") {
                        if self.peek_is_op("}") {
                            break;
                        }
                        items.push(self.expr()?);
                    }
                    self.expect_op("}")?;
                    Ok(Expr::Set(items))
                }
            }
            Tok::Op(o) => {
                self.pos -= 1;
                Err(CompileError(format!("unsupported construct: {}", op_construct(o))))
            }
        }
    }

    fn seq(&mut self, close: &str) -> Result<Vec<Expr>, CompileError> {
        let mut items = Vec::new();
        loop {
            if self.eat_op(close) {
                return Ok(items);
            }
            items.push(self.expr()?);
            if self.peek_is_name("for") {
                return Err(CompileError("unsupported construct: comprehension".into()));
            }
            if !self.eat_op(",") {
                self.expect_op(close)?;
                return Ok(items);
            }
        }
    }
}

fn is_unsupported_keyword(n: &str) -> bool {
    matches!(
        n,
        "lambda"
            | "if"
            | "else"
            | "for"
            | "yield"
            | "await"
            | "import"
            | "def"
            | "class"
            | "return"
            | "del"
            | "global"
            | "print"
            | "exec"
            | "while"
            | "with"
            | "as"
            | "assert"
            | "async"
            | "from"
            | "pass"
            | "raise"
            | "try"
    )
}

/// Why an evaluation failed (Python would raise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Condition {
    /// Compile a condition. `Ok(None)` for a blank one.
    pub fn compile(source: &str) -> Result<Option<Condition>, CompileError> {
        if source.trim().is_empty() {
            return Ok(None);
        }
        let toks = tokenize(source)?;
        let mut p = Parser { toks, pos: 0 };
        let expr = p.expr()?;
        if p.pos != p.toks.len() {
            return Err(p.unexpected("after the end of the expression"));
        }
        Ok(Some(Condition {
            source: source.to_string(),
            expr,
        }))
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate for an image; the result's truthiness decides synchronisability.
    pub fn eval(
        &self,
        image: &Image,
        metadata_set: &std::collections::BTreeSet<String>,
    ) -> Result<PyValue, EvalError> {
        let ctx = Ctx {
            image,
            metadata_set,
        };
        ctx.eval(&self.expr)
    }

    /// Evaluate to a bool (Python truthiness).
    pub fn matches(
        &self,
        image: &Image,
        metadata_set: &std::collections::BTreeSet<String>,
    ) -> Result<bool, EvalError> {
        self.eval(image, metadata_set).map(|v| v.truthy())
    }
}

struct Ctx<'a> {
    image: &'a Image,
    metadata_set: &'a std::collections::BTreeSet<String>,
}

fn iter_items(v: &PyValue) -> Result<Vec<PyValue>, EvalError> {
    match v {
        PyValue::List(x) | PyValue::Tuple(x) | PyValue::Set(x) => Ok(x.clone()),
        PyValue::Dict(x) => Ok(x.iter().map(|(k, _)| k.clone()).collect()),
        PyValue::Str(s) => Ok(s.chars().map(|c| PyValue::Str(c.to_string())).collect()),
        other => Err(EvalError(format!(
            "'{}' object is not iterable",
            other.type_name()
        ))),
    }
}

fn contains(container: &PyValue, item: &PyValue) -> Result<bool, EvalError> {
    match container {
        PyValue::Str(s) => match item {
            PyValue::Str(i) => Ok(s.contains(i.as_str())),
            other => Err(EvalError(format!(
                "'in <string>' requires string as left operand, not {}",
                other.type_name()
            ))),
        },
        PyValue::Dict(x) => Ok(x.iter().any(|(k, _)| py_eq(k, item))),
        PyValue::List(x) | PyValue::Tuple(x) | PyValue::Set(x) => {
            Ok(x.iter().any(|e| py_eq(e, item)))
        }
        other => Err(EvalError(format!(
            "argument of type '{}' is not iterable",
            other.type_name()
        ))),
    }
}

fn order(a: &PyValue, b: &PyValue) -> Result<std::cmp::Ordering, EvalError> {
    match (a, b) {
        (PyValue::Str(x), PyValue::Str(y)) => Ok(x.cmp(y)),
        (PyValue::List(x), PyValue::List(y)) | (PyValue::Tuple(x), PyValue::Tuple(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return order(p, q);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => match (a.as_number(), b.as_number()) {
            (Some(x), Some(y)) => x
                .partial_cmp(&y)
                .ok_or_else(|| EvalError("cannot order NaN".into())),
            // Mixed types: Python 2 (which existing conditions were written for) orders
            // None first, then numbers, then other types by type name ('5' > 3 is True).
            _ => {
                let rank = |v: &PyValue| match v {
                    PyValue::None => (0, ""),
                    PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_) => (1, ""),
                    other => (2, other.type_name()),
                };
                let (ra, rb) = (rank(a), rank(b));
                if ra == rb {
                    Err(EvalError(format!(
                        "'<' not supported between instances of '{}' and '{}'",
                        a.type_name(),
                        b.type_name()
                    )))
                } else {
                    Ok(ra.cmp(&rb))
                }
            }
        },
    }
}

impl Ctx<'_> {
    fn eval(&self, e: &Expr) -> Result<PyValue, EvalError> {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Image => Err(EvalError(
                "'image' cannot be used as a value; use one of its attributes".into(),
            )),
            Expr::MetadataSet => Ok(PyValue::Set(
                self.metadata_set
                    .iter()
                    .map(|s| PyValue::Str(s.clone()))
                    .collect(),
            )),
            Expr::ImageAttr(attr) => Ok(self.image_attr(attr)),
            Expr::Index(obj, idx) => {
                let o = self.eval(obj)?;
                let i = self.eval(idx)?;
                match &o {
                    PyValue::Dict(items) => items
                        .iter()
                        .find(|(k, _)| py_eq(k, &i))
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| EvalError(format!("KeyError: {}", i.repr()))),
                    PyValue::List(x) | PyValue::Tuple(x) => {
                        let PyValue::Int(n) = i else {
                            return Err(EvalError(format!(
                                "indices must be integers, not {}",
                                i.type_name()
                            )));
                        };
                        let len = i64::try_from(x.len()).unwrap_or(i64::MAX);
                        let n = if n < 0 { n + len } else { n };
                        usize::try_from(n)
                            .ok()
                            .and_then(|n| x.get(n))
                            .cloned()
                            .ok_or_else(|| EvalError("IndexError: index out of range".into()))
                    }
                    PyValue::Str(s) => {
                        let PyValue::Int(n) = i else {
                            return Err(EvalError("string indices must be integers".into()));
                        };
                        let chars: Vec<char> = s.chars().collect();
                        let len = i64::try_from(chars.len()).unwrap_or(i64::MAX);
                        let n = if n < 0 { n + len } else { n };
                        usize::try_from(n)
                            .ok()
                            .and_then(|n| chars.get(n))
                            .map(|c| PyValue::Str(c.to_string()))
                            .ok_or_else(|| {
                                EvalError("IndexError: string index out of range".into())
                            })
                    }
                    other => Err(EvalError(format!(
                        "'{}' object is not subscriptable",
                        other.type_name()
                    ))),
                }
            }
            Expr::Call(obj, method, args) => {
                let o = self.eval(obj)?;
                let args: Vec<PyValue> = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<_, _>>()?;
                self.call(&o, method, &args)
            }
            Expr::Not(x) => Ok(PyValue::Bool(!self.eval(x)?.truthy())),
            Expr::And(a, b) => {
                let l = self.eval(a)?;
                if l.truthy() {
                    self.eval(b)
                } else {
                    Ok(l)
                }
            }
            Expr::Or(a, b) => {
                let l = self.eval(a)?;
                if l.truthy() {
                    Ok(l)
                } else {
                    self.eval(b)
                }
            }
            Expr::Compare(first, rest) => {
                let mut left = self.eval(first)?;
                for (op, rexpr) in rest {
                    let right = self.eval(rexpr)?;
                    let ok = match op {
                        CmpOp::Eq => py_eq(&left, &right),
                        CmpOp::Ne => !py_eq(&left, &right),
                        CmpOp::Lt => order(&left, &right)?.is_lt(),
                        CmpOp::Le => order(&left, &right)?.is_le(),
                        CmpOp::Gt => order(&left, &right)?.is_gt(),
                        CmpOp::Ge => order(&left, &right)?.is_ge(),
                        CmpOp::In => contains(&right, &left)?,
                        CmpOp::NotIn => !contains(&right, &left)?,
                        CmpOp::Is => is_same(&left, &right),
                        CmpOp::IsNot => !is_same(&left, &right),
                    };
                    if !ok {
                        return Ok(PyValue::Bool(false));
                    }
                    left = right;
                }
                Ok(PyValue::Bool(true))
            }
            Expr::List(items) => Ok(PyValue::List(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::Tuple(items) => Ok(PyValue::Tuple(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::Set(items) => {
                let mut out: Vec<PyValue> = Vec::new();
                for i in items {
                    let v = self.eval(i)?;
                    if !out.iter().any(|e| py_eq(e, &v)) {
                        out.push(v);
                    }
                }
                Ok(PyValue::Set(out))
            }
            Expr::Dict(items) => {
                let mut out: Vec<(PyValue, PyValue)> = Vec::new();
                for (k, v) in items {
                    let k = self.eval(k)?;
                    let v = self.eval(v)?;
                    if let Some(slot) = out.iter_mut().find(|(k2, _)| py_eq(k2, &k)) {
                        slot.1 = v;
                    } else {
                        out.push((k, v));
                    }
                }
                Ok(PyValue::Dict(out))
            }
            Expr::Neg(x) => match self.eval(x)? {
                PyValue::Int(i) => Ok(PyValue::Int(-i)),
                PyValue::Float(f) => Ok(PyValue::Float(-f)),
                other => Err(EvalError(format!(
                    "bad operand type for unary -: '{}'",
                    other.type_name()
                ))),
            },
        }
    }

    fn image_attr(&self, attr: &str) -> PyValue {
        let i = self.image;
        match attr {
            "name" => PyValue::Str(i.name.clone()),
            "id" => PyValue::Str(i.id.clone()),
            "region" => PyValue::Str(i.region.clone()),
            "status" => PyValue::Str(i.status.clone()),
            "size" => PyValue::Int(i64::try_from(i.size).unwrap_or(i64::MAX)),
            "checksum" => i.checksum.clone().map_or(PyValue::None, PyValue::Str),
            "owner" => PyValue::Str(i.owner.clone()),
            "is_public" => PyValue::Bool(i.is_public),
            _ => PyValue::Dict(
                i.user_properties
                    .iter()
                    .map(|(k, v)| (PyValue::Str(k.clone()), v.clone()))
                    .collect(),
            ),
        }
    }

    fn call(&self, o: &PyValue, method: &str, args: &[PyValue]) -> Result<PyValue, EvalError> {
        match (method, o) {
            ("get", PyValue::Dict(items)) => {
                if args.is_empty() || args.len() > 2 {
                    return Err(EvalError(format!(
                        "get expected 1 or 2 arguments, got {}",
                        args.len()
                    )));
                }
                Ok(items
                    .iter()
                    .find(|(k, _)| py_eq(k, &args[0]))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| args.get(1).cloned().unwrap_or(PyValue::None)))
            }
            ("keys", PyValue::Dict(items)) if args.is_empty() => Ok(PyValue::List(
                items.iter().map(|(k, _)| k.clone()).collect(),
            )),
            ("intersection", PyValue::Set(items)) => {
                let mut out: Vec<PyValue> = items.clone();
                for a in args {
                    let other = iter_items(a)?;
                    out.retain(|e| other.iter().any(|o| py_eq(o, e)));
                }
                Ok(PyValue::Set(out))
            }
            ("startswith" | "endswith", PyValue::Str(s)) => {
                let Some(arg) = args.first() else {
                    return Err(EvalError(format!("{method} expected 1 argument")));
                };
                let candidates = match arg {
                    PyValue::Str(p) => vec![p.clone()],
                    PyValue::Tuple(t) => t
                        .iter()
                        .map(|x| match x {
                            PyValue::Str(p) => Ok(p.clone()),
                            other => Err(EvalError(format!(
                                "expected str, not {}",
                                other.type_name()
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                    other => {
                        return Err(EvalError(format!(
                            "expected str, not {}",
                            other.type_name()
                        )))
                    }
                };
                let r = candidates.iter().any(|p| {
                    if method == "startswith" {
                        s.starts_with(p.as_str())
                    } else {
                        s.ends_with(p.as_str())
                    }
                });
                Ok(PyValue::Bool(r))
            }
            _ => Err(EvalError(format!(
                "'{}' object has no attribute '{method}'",
                o.type_name()
            ))),
        }
    }
}

fn is_same(a: &PyValue, b: &PyValue) -> bool {
    match (a, b) {
        (PyValue::None, PyValue::None) => true,
        (PyValue::Bool(x), PyValue::Bool(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn img(public: bool, props: &str) -> Image {
        let mut i = Image::new("R", "img", "id1");
        i.is_public = public;
        i.user_properties = crate::pyvalue::parse_properties(props).unwrap();
        i
    }

    fn eval(src: &str, i: &Image, ms: &[&str]) -> bool {
        let set: BTreeSet<String> = ms.iter().map(|s| s.to_string()).collect();
        Condition::compile(src)
            .unwrap()
            .unwrap()
            .matches(i, &set)
            .unwrap()
    }

    #[test]
    fn fixture_condition_with_continuations() {
        let src = "image.is_public and\\\n'type' in image.user_properties and image.user_properties['type']\\\n== 'baseimage'";
        assert!(eval(src, &img(true, "{'type': 'baseimage'}"), &[]));
        assert!(!eval(src, &img(true, "{'type': 'ngimages'}"), &[]));
        assert!(!eval(src, &img(false, "{'type': 'baseimage'}"), &[]));
        assert!(!eval(src, &img(true, "{}"), &[]));
    }

    #[test]
    fn methods_and_operators() {
        let i = img(false, "{'nid': 3, 'type': u'x', 'sdc_aware': True}");
        assert!(eval("image.user_properties.get('nid', 0) >= 3", &i, &[]));
        assert!(eval(
            "image.user_properties.get('missing') is None",
            &i,
            &[]
        ));
        assert!(eval(
            "metadata_set.intersection(image.user_properties)",
            &i,
            &["nid", "zz"]
        ));
        assert!(!eval(
            "metadata_set.intersection(image.user_properties)",
            &i,
            &["zz"]
        ));
        assert!(eval("not image.is_public and image.name == 'img'", &i, &[]));
        assert!(eval("'nid' not in metadata_set", &i, &[]));
        assert!(eval("image.user_properties['type'] in ('x', 'y')", &i, &[]));
        assert!(eval("1 < image.user_properties['nid'] <= 3", &i, &[]));
        assert!(eval(
            "(image.is_public or image.user_properties.get('sdc_aware', False))",
            &i,
            &[]
        ));
        assert!(eval(
            "image.name.startswith('im') and image.size == 0",
            &i,
            &[]
        ));
        assert!(eval(
            "image.owner == '' and image.checksum is None",
            &i,
            &[]
        ));
    }

    #[test]
    fn mixed_type_ordering_follows_python2() {
        let i = img(true, "{'nid': '5'}");
        // Glance properties are strings; Python 2 ordered any str above any int.
        assert!(eval("image.user_properties['nid'] > 3", &i, &[]));
        assert!(eval("None < 0 < 'a'", &i, &[]));
        assert!(eval("[1] < 'a' < (1,)", &i, &[]));
    }

    #[test]
    fn missing_key_is_an_eval_error() {
        let c = Condition::compile("image.user_properties['nope'] == 1")
            .unwrap()
            .unwrap();
        let e = c.matches(&img(true, "{}"), &BTreeSet::new()).unwrap_err();
        assert!(e.0.contains("KeyError"), "{e}");
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (src, what) in [
            ("len(image.name) > 3", "function call len()"),
            ("image.size + 1 > 3", "arithmetic operator '+'"),
            ("image.foo", "image.foo"),
            ("__import__('os')", "function call __import__()"),
            ("image.name.split(',')", ".split()"),
            ("lambda: 1", "lambda"),
            ("[x for x in metadata_set]", "unknown name 'x'"),
            ("[image.name for image in metadata_set]", "comprehension"),
            ("os.system", "unknown name 'os'"),
            ("image.name[1:]", "slice"),
            ("1 if image.is_public else 0", "if"),
        ] {
            let e = Condition::compile(src).unwrap_err().0;
            assert!(e.contains(what), "{src}: {e}");
        }
        assert!(Condition::compile("   ").unwrap().is_none());
    }
}
