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
//!
//! [`lexer`] turns the source into tokens, [`parser`] builds the expression
//! tree (and names what it refuses), [`eval`] evaluates it for an image.

use crate::image::Image;
use crate::pyvalue::PyValue;

mod eval;
mod lexer;
mod parser;

use eval::Ctx;
use lexer::tokenize;
use parser::Parser;

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

/// The error of compiling a condition: names the unsupported construct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
