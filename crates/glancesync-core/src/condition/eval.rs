//! Evaluating a condition's expression tree for one image, with Python's
//! semantics (truthiness, comparisons, `in`, the supported methods).

use super::{CmpOp, EvalError, Expr};
use crate::image::Image;
use crate::pyvalue::{py_eq, PyValue};

pub(super) struct Ctx<'a> {
    pub(super) image: &'a Image,
    pub(super) metadata_set: &'a std::collections::BTreeSet<String>,
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
    pub(super) fn eval(&self, e: &Expr) -> Result<PyValue, EvalError> {
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
