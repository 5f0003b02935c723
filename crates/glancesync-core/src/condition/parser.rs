//! The expression tree of a condition, built from its tokens; every
//! construct outside the supported subset is refused with its name.

use super::lexer::Tok;
use super::{CmpOp, CompileError, Expr, IMAGE_ATTRIBUTES, METHODS};
use crate::pyvalue::PyValue;

pub(super) struct Parser {
    pub(super) toks: Vec<Tok>,
    pub(super) pos: usize,
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

    pub(super) fn unexpected(&self, context: &str) -> CompileError {
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

    pub(super) fn expr(&mut self) -> Result<Expr, CompileError> {
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
