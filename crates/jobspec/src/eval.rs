//! Evaluates HCL expressions from the hcl-edit tree into values, with Nomad's rule that references
//! to anything but `var.*`/`local.*` are runtime interpolations kept as their exact source text.
//! It owns the hcl-rs evaluation context; it does not know which attributes exist in a job.

use crate::diag::Span;
use crate::funcs;
use hcl::eval::{Context, Evaluate};
use hcl::{Map, Value};
use hcl_edit::expr::{Expression, ObjectKey, TraversalOperator};
use hcl_edit::template::{Directive, Element, Template};
use hcl_edit::visit_mut::{visit_expr_mut, visit_for_expr_mut, VisitMut};
use hcl_edit::Span as _;
use std::sync::OnceLock;

/// Why an expression could not be evaluated, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalError {
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
    /// Set when the cause was already reported (a variable that failed to resolve), so callers
    /// do not pile a second, misleading diagnostic on top.
    pub already_reported: bool,
}

impl EvalError {
    fn new(span: Span, message: impl Into<String>) -> EvalError {
        EvalError { span, message: message.into(), hint: None, already_reported: false }
    }

    fn hint(mut self, hint: impl Into<String>) -> EvalError {
        self.hint = Some(hint.into());
        self
    }
}

/// Roots that are evaluated at parse time; every other root is a runtime interpolation.
const PARSE_TIME_ROOTS: &[&str] = &["var", "local"];

/// Evaluates expressions of one source text.
pub(crate) struct Evaluator<'s> {
    text: &'s str,
    vars: Option<Map<String, Value>>,
    locals: Option<Map<String, Value>>,
    /// `var.x`/`local.x` names whose value could not be determined (already reported).
    failed: Vec<String>,
    base: Context<'static>,
    /// `dynamic` block iterators in scope, innermost last.
    scopes: Vec<(String, Value)>,
    scoped: Option<Context<'static>>,
}

/// Where a reference points.
enum Root {
    /// `var.x`/`local.x`, a `for` variable, or a `dynamic` iterator: evaluated now.
    ParseTime,
    /// Anything else (`node`, `attr`, `meta`, `NOMAD_PORT_http`, …): kept for the client.
    Runtime,
}

impl<'s> Evaluator<'s> {
    /// An evaluator with functions but no variables (for variable defaults and var files).
    pub fn new(text: &'s str, allow_fs: bool) -> Evaluator<'s> {
        // Building the function table is the costliest part of a small job's evaluation, and it
        // never changes, so each variant is built once per process and cloned.
        static PLAIN: OnceLock<Context<'static>> = OnceLock::new();
        static WITH_FS: OnceLock<Context<'static>> = OnceLock::new();
        let cell = if allow_fs { &WITH_FS } else { &PLAIN };
        let base = cell
            .get_or_init(|| {
                let mut ctx = Context::new();
                funcs::declare(&mut ctx, allow_fs);
                ctx
            })
            .clone();
        Evaluator {
            text,
            vars: None,
            locals: None,
            failed: Vec::new(),
            base,
            scopes: Vec::new(),
            scoped: None,
        }
    }

    /// Makes `var.*` available.
    pub fn set_vars(&mut self, vars: Map<String, Value>) {
        self.base.declare_var("var", Value::Object(vars.clone()));
        self.vars = Some(vars);
    }

    /// Marks `var.x`/`local.x` references (written as "var.x") whose resolution already failed.
    pub fn set_failed(&mut self, failed: Vec<String>) {
        self.failed = failed;
    }

    /// Makes `local.*` available.
    pub fn set_locals(&mut self, locals: Map<String, Value>) {
        self.base.declare_var("local", Value::Object(locals.clone()));
        self.locals = Some(locals);
    }

    /// Brings a `dynamic` block iterator into scope until [`Evaluator::pop_scope`].
    pub fn push_scope(&mut self, name: String, value: Value) {
        self.scopes.push((name, value));
        self.rebuild_scoped();
    }

    pub fn pop_scope(&mut self) {
        self.scopes.pop();
        self.rebuild_scoped();
    }

    fn rebuild_scoped(&mut self) {
        self.scoped = (!self.scopes.is_empty()).then(|| {
            let mut ctx = self.base.clone();
            for (name, value) in &self.scopes {
                ctx.declare_var(name.as_str(), value.clone());
            }
            ctx
        });
    }

    fn ctx(&self) -> &Context<'static> {
        self.scoped.as_ref().unwrap_or(&self.base)
    }

    fn slice(&self, span: &Span) -> &'s str {
        self.text.get(span.clone()).unwrap_or_default()
    }

    fn root_kind(&self, name: &str, bound: &[String]) -> Root {
        if PARSE_TIME_ROOTS.contains(&name)
            || bound.iter().any(|b| b == name)
            || self.scopes.iter().any(|(s, _)| s == name)
        {
            Root::ParseTime
        } else {
            Root::Runtime
        }
    }

    /// Evaluates an expression to a value.
    pub fn eval(&self, expr: &Expression) -> Result<Value, EvalError> {
        let span = expr.span().unwrap_or_default();
        match expr {
            Expression::Null(_) => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b.value())),
            Expression::Number(n) => Ok(Value::Number(*n.value())),
            Expression::String(s) => Ok(Value::String(s.value().clone())),
            Expression::Array(items) => {
                items.iter().map(|e| self.eval(e)).collect::<Result<_, _>>().map(Value::Array)
            }
            Expression::Object(object) => {
                let mut out = Map::new();
                for (key, value) in object.iter() {
                    let k = match key {
                        ObjectKey::Ident(ident) => ident.as_str().to_string(),
                        ObjectKey::Expression(e) => self.eval_key(e)?,
                    };
                    out.insert(k, self.eval(value.expr())?);
                }
                Ok(Value::Object(out))
            }
            Expression::StringTemplate(t) => {
                // HCL gives a template that is exactly one interpolation the value's own type,
                // so `count = "${var.n}"` is a number.
                if let (1, Some(Element::Interpolation(interp))) = (t.len(), t.iter().next()) {
                    if !interp.strip.strip_start()
                        && !interp.strip.strip_end()
                        && self.first_runtime_ref(&interp.expr, &mut Vec::new()).is_none()
                    {
                        return self.eval(&interp.expr);
                    }
                }
                self.template(t).map(Value::String)
            }
            Expression::HeredocTemplate(h) => {
                let mut h = (**h).clone();
                h.dedent();
                self.template(&h.template).map(Value::String)
            }
            Expression::Parenthesis(p) => self.eval(p.inner()),
            Expression::Variable(_) | Expression::Traversal(_)
                if self.is_runtime_reference(expr) =>
            {
                // Nomad keeps a bare runtime reference as an interpolation string, so
                // `attribute = meta.rack` means the same as `attribute = "${meta.rack}"`.
                Ok(Value::String(format!("${{{}}}", self.slice(&span))))
            }
            _ => self.eval_now(expr),
        }
    }

    /// An object key: an identifier-like expression names itself, anything else is evaluated.
    fn eval_key(&self, e: &Expression) -> Result<String, EvalError> {
        if let Expression::Variable(v) = e {
            return Ok(v.as_str().to_string());
        }
        let v = self.eval(e)?;
        funcs::primitive_string(&v).ok_or_else(|| {
            EvalError::new(
                e.span().unwrap_or_default(),
                format!("object key must be a string, got {}", type_name(&v)),
            )
        })
    }

    /// True when the expression is a bare reference whose root is only known at runtime.
    fn is_runtime_reference(&self, expr: &Expression) -> bool {
        let root = match expr {
            Expression::Variable(v) => v.as_str(),
            Expression::Traversal(t) => match &t.expr {
                Expression::Variable(v) => v.as_str(),
                _ => return false,
            },
            _ => return false,
        };
        matches!(self.root_kind(root, &[]), Root::Runtime)
    }

    /// Evaluates a template: parse-time interpolations are substituted, runtime ones keep their
    /// exact source text (including inner spacing), as Nomad's HCL fork does.
    fn template(&self, t: &Template) -> Result<String, EvalError> {
        let mut out = String::new();
        let mut strip_next = false;
        for element in t.iter() {
            match element {
                Element::Literal(lit) => {
                    let text = lit.value().as_str();
                    out.push_str(if strip_next { text.trim_start() } else { text });
                    strip_next = false;
                }
                Element::Interpolation(interp) => {
                    let span = interp.span().unwrap_or_default();
                    if self.first_runtime_ref(&interp.expr, &mut Vec::new()).is_some() {
                        out.push_str(self.slice(&span));
                        strip_next = false;
                        continue;
                    }
                    if interp.strip.strip_start() {
                        out.truncate(out.trim_end().len());
                    }
                    let value = self.eval(&interp.expr)?;
                    out.push_str(&self.template_string(&value, &span)?);
                    strip_next = interp.strip.strip_end();
                }
                Element::Directive(directive) => {
                    let span = directive.span().unwrap_or_default();
                    if self.directive_has_runtime_ref(directive) {
                        out.push_str(self.slice(&span));
                    } else {
                        let mut only = Template::new();
                        only.push(Element::Directive(directive.clone()));
                        let tpl: hcl::Template = only.into();
                        let text =
                            tpl.evaluate(self.ctx()).map_err(|e| self.hcl_error(&span, e))?;
                        out.push_str(&text);
                    }
                    strip_next = false;
                }
            }
        }
        Ok(out)
    }

    fn template_string(&self, value: &Value, span: &Span) -> Result<String, EvalError> {
        funcs::primitive_string(value).ok_or_else(|| {
            EvalError::new(
                span.clone(),
                format!("cannot include a {} in a string template", type_name(value)),
            )
            .hint("only strings, numbers and bools can be interpolated; use join() or jsonencode() for collections")
        })
    }

    fn directive_has_runtime_ref(&self, d: &Directive) -> bool {
        let mut bound = Vec::new();
        match d {
            Directive::If(d) => {
                self.first_runtime_ref(&d.if_expr.cond_expr, &mut bound).is_some()
                    || self.template_runtime_ref(&d.if_expr.template, &mut bound)
                    || d.else_expr
                        .as_ref()
                        .is_some_and(|e| self.template_runtime_ref(&e.template, &mut bound))
            }
            Directive::For(d) => {
                let f = &d.for_expr;
                if self.first_runtime_ref(&f.collection_expr, &mut bound).is_some() {
                    return true;
                }
                bound.push(f.value_var.as_str().to_string());
                if let Some(k) = &f.key_var {
                    bound.push(k.as_str().to_string());
                }
                self.template_runtime_ref(&f.template, &mut bound)
            }
        }
    }

    fn template_runtime_ref(&self, t: &Template, bound: &mut Vec<String>) -> bool {
        t.iter().any(|e| match e {
            Element::Literal(_) => false,
            Element::Interpolation(i) => self.first_runtime_ref(&i.expr, bound).is_some(),
            Element::Directive(d) => self.directive_has_runtime_ref(d),
        })
    }

    /// The span of the first reference to a runtime root, if any. `bound` holds the names that
    /// enclosing `for` expressions introduce.
    fn first_runtime_ref(&self, expr: &Expression, bound: &mut Vec<String>) -> Option<Span> {
        match expr {
            Expression::Null(_)
            | Expression::Bool(_)
            | Expression::Number(_)
            | Expression::String(_) => None,
            Expression::Variable(v) => match self.root_kind(v.as_str(), bound) {
                Root::Runtime => Some(v.span().unwrap_or_default()),
                Root::ParseTime => None,
            },
            Expression::Traversal(t) => {
                if let Expression::Variable(v) = &t.expr {
                    if let Root::Runtime = self.root_kind(v.as_str(), bound) {
                        return Some(t.span().unwrap_or_default());
                    }
                } else if let Some(s) = self.first_runtime_ref(&t.expr, bound) {
                    return Some(s);
                }
                t.operators.iter().find_map(|op| match op.value() {
                    TraversalOperator::Index(e) => self.first_runtime_ref(e, bound),
                    _ => None,
                })
            }
            Expression::Array(items) => items.iter().find_map(|e| self.first_runtime_ref(e, bound)),
            Expression::Object(o) => o.iter().find_map(|(k, v)| {
                let key = match k {
                    ObjectKey::Expression(e) if !matches!(e, Expression::Variable(_)) => {
                        self.first_runtime_ref(e, bound)
                    }
                    _ => None,
                };
                key.or_else(|| self.first_runtime_ref(v.expr(), bound))
            }),
            Expression::StringTemplate(t) => {
                self.template_runtime_ref(t, bound).then(|| t.span().unwrap_or_default())
            }
            Expression::HeredocTemplate(h) => {
                self.template_runtime_ref(&h.template, bound).then(|| h.span().unwrap_or_default())
            }
            Expression::Parenthesis(p) => self.first_runtime_ref(p.inner(), bound),
            Expression::Conditional(c) => self
                .first_runtime_ref(&c.cond_expr, bound)
                .or_else(|| self.first_runtime_ref(&c.true_expr, bound))
                .or_else(|| self.first_runtime_ref(&c.false_expr, bound)),
            Expression::FuncCall(f) => f.args.iter().find_map(|e| self.first_runtime_ref(e, bound)),
            Expression::UnaryOp(u) => self.first_runtime_ref(&u.expr, bound),
            Expression::BinaryOp(b) => self
                .first_runtime_ref(&b.lhs_expr, bound)
                .or_else(|| self.first_runtime_ref(&b.rhs_expr, bound)),
            Expression::ForExpr(f) => {
                if let Some(s) = self.first_runtime_ref(&f.intro.collection_expr, bound) {
                    return Some(s);
                }
                let before = bound.len();
                bound.push(f.intro.value_var.as_str().to_string());
                if let Some(k) = &f.intro.key_var {
                    bound.push(k.as_str().to_string());
                }
                let found = f
                    .key_expr
                    .as_ref()
                    .and_then(|e| self.first_runtime_ref(e, bound))
                    .or_else(|| self.first_runtime_ref(&f.value_expr, bound))
                    .or_else(|| {
                        f.cond.as_ref().and_then(|c| self.first_runtime_ref(&c.expr, bound))
                    });
                bound.truncate(before);
                found
            }
        }
    }

    /// Checks `var.x`/`local.x` references against what is declared, for a precise message.
    fn check_declared(&self, expr: &Expression) -> Result<(), EvalError> {
        let mut problem = None;
        visit_traversals(expr, &mut |root, attr, span| {
            if problem.is_some() {
                return;
            }
            let (table, kind) = match root {
                "var" => (&self.vars, "variable"),
                "local" => (&self.locals, "local value"),
                _ => return,
            };
            match (table, attr) {
                (None, _) => {
                    problem = Some(
                        EvalError::new(span.clone(), format!("{root}.* cannot be used here"))
                            .hint("variable defaults and var files may only contain literal values and function calls"),
                    );
                }
                (Some(_), Some(name))
                    if self.failed.iter().any(|f| *f == format!("{root}.{name}")) =>
                {
                    let mut e = EvalError::new(span.clone(), format!("{root}.{name} has no value"));
                    e.already_reported = true;
                    problem = Some(e);
                }
                (Some(map), Some(name)) if !map.contains_key(name) => {
                    let hint = if root == "var" {
                        format!("declare it with a `variable \"{name}\" {{}}` block")
                    } else {
                        format!("define it in a `locals {{ {name} = ... }}` block")
                    };
                    problem = Some(
                        EvalError::new(span.clone(), format!("undeclared {kind} {root}.{name}"))
                            .hint(hint),
                    );
                }
                _ => {}
            }
        });
        problem.map_or(Ok(()), Err)
    }

    /// Evaluates with hcl-rs; the expression must not contain runtime references.
    fn eval_now(&self, expr: &Expression) -> Result<Value, EvalError> {
        let span = expr.span().unwrap_or_default();
        if let Some(at) = self.first_runtime_ref(expr, &mut Vec::new()) {
            let text = self.slice(&at);
            return Err(EvalError::new(
                at.clone(),
                format!("`{text}` is only known when the task runs, so it cannot be used in an expression"),
            )
            .hint(format!("runtime values can only appear inside strings, as \"${{{text}}}\"")));
        }
        self.check_declared(expr)?;
        let mut owned = expr.clone();
        let mut try_can = TryCan { ev: self, in_for: 0, error: None };
        try_can.visit_expr_mut(&mut owned);
        if let Some(e) = try_can.error {
            return Err(e);
        }
        let converted: hcl::Expression = owned.into();
        converted.evaluate(self.ctx()).map_err(|e| self.hcl_error(&span, e))
    }

    fn hcl_error(&self, span: &Span, err: hcl::eval::Error) -> EvalError {
        match err.kind() {
            hcl::eval::ErrorKind::UndefinedFunc(name) => {
                let name = name.to_string();
                let hint = if funcs::FS_NAMES.contains(&name.as_str()) {
                    "filesystem functions are only available when filesystem access is allowed"
                        .to_string()
                } else {
                    match closest(&name, &funcs::names()) {
                        Some(near) => format!("did you mean {near}()?"),
                        None => "see the list of HCL functions Nomad supports".to_string(),
                    }
                };
                EvalError::new(span.clone(), format!("unknown function {name}()")).hint(hint)
            }
            kind => EvalError::new(span.clone(), kind.to_string()),
        }
    }
}

/// `try` and `can` must see their arguments unevaluated, which hcl-rs functions never do, so
/// they are evaluated here first and replaced by their results before hcl-rs runs.
struct TryCan<'e, 's> {
    ev: &'e Evaluator<'s>,
    /// Depth of enclosing `for` expressions, whose variables only exist inside hcl-rs.
    in_for: usize,
    error: Option<EvalError>,
}

impl VisitMut for TryCan<'_, '_> {
    fn visit_expr_mut(&mut self, expr: &mut Expression) {
        if self.error.is_some() {
            return;
        }
        let Expression::FuncCall(call) = expr else {
            visit_expr_mut(self, expr);
            return;
        };
        let name = call.name.name.as_str();
        if !call.name.namespace.is_empty() || (name != "try" && name != "can") {
            visit_expr_mut(self, expr);
            return;
        }
        let span = call.span().unwrap_or_default();
        if self.in_for > 0 {
            self.error = Some(EvalError::new(
                span,
                format!("{name}() cannot be used inside a for expression"),
            ));
            return;
        }
        let args: Vec<&Expression> = call.args.iter().collect();
        let value = match (name, args.as_slice()) {
            ("can", [only]) => Value::Bool(self.ev.eval(only).is_ok()),
            ("can", _) => {
                self.error = Some(EvalError::new(span, "can() takes exactly one argument"));
                return;
            }
            (_, []) => {
                self.error = Some(EvalError::new(span, "try() needs at least one argument"));
                return;
            }
            (_, candidates) => {
                let mut last = None;
                let mut found = None;
                for candidate in candidates {
                    match self.ev.eval(candidate) {
                        Ok(v) => {
                            found = Some(v);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                match (found, last) {
                    (Some(v), _) => v,
                    (None, last) => {
                        let reason = last.map(|e| e.message).unwrap_or_default();
                        self.error = Some(EvalError::new(
                            span,
                            format!("try(): no argument could be evaluated; the last one failed with: {reason}"),
                        ));
                        return;
                    }
                }
            }
        };
        let literal: hcl::Expression = value.into();
        *expr = literal.into();
    }

    fn visit_for_expr_mut(&mut self, node: &mut hcl_edit::expr::ForExpr) {
        self.in_for += 1;
        visit_for_expr_mut(self, node);
        self.in_for -= 1;
    }
}

/// Calls `f(root, first_attribute, span)` for every variable reference in `expr`.
fn visit_traversals(expr: &Expression, f: &mut dyn FnMut(&str, Option<&str>, &Span)) {
    match expr {
        Expression::Variable(v) => f(v.as_str(), None, &v.span().unwrap_or_default()),
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                let first = t.operators.first().and_then(|op| match op.value() {
                    TraversalOperator::GetAttr(a) => Some(a.as_str()),
                    _ => None,
                });
                f(v.as_str(), first, &t.span().unwrap_or_default());
            } else {
                visit_traversals(&t.expr, f);
            }
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op.value() {
                    visit_traversals(e, f);
                }
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| visit_traversals(e, f)),
        Expression::Object(o) => o.iter().for_each(|(k, v)| {
            if let ObjectKey::Expression(e) = k {
                if !matches!(e, Expression::Variable(_)) {
                    visit_traversals(e, f);
                }
            }
            visit_traversals(v.expr(), f);
        }),
        Expression::StringTemplate(t) => visit_template(t, f),
        Expression::HeredocTemplate(h) => visit_template(&h.template, f),
        Expression::Parenthesis(p) => visit_traversals(p.inner(), f),
        Expression::Conditional(c) => {
            visit_traversals(&c.cond_expr, f);
            visit_traversals(&c.true_expr, f);
            visit_traversals(&c.false_expr, f);
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|e| visit_traversals(e, f)),
        Expression::UnaryOp(u) => visit_traversals(&u.expr, f),
        Expression::BinaryOp(b) => {
            visit_traversals(&b.lhs_expr, f);
            visit_traversals(&b.rhs_expr, f);
        }
        Expression::ForExpr(fe) => {
            visit_traversals(&fe.intro.collection_expr, f);
            if let Some(k) = &fe.key_expr {
                visit_traversals(k, f);
            }
            visit_traversals(&fe.value_expr, f);
            if let Some(c) = &fe.cond {
                visit_traversals(&c.expr, f);
            }
        }
        Expression::Null(_)
        | Expression::Bool(_)
        | Expression::Number(_)
        | Expression::String(_) => {}
    }
}

fn visit_template(t: &Template, f: &mut dyn FnMut(&str, Option<&str>, &Span)) {
    for e in t.iter() {
        match e {
            Element::Literal(_) => {}
            Element::Interpolation(i) => visit_traversals(&i.expr, f),
            Element::Directive(d) => match &**d {
                Directive::If(d) => {
                    visit_traversals(&d.if_expr.cond_expr, f);
                    visit_template(&d.if_expr.template, f);
                    if let Some(e) = &d.else_expr {
                        visit_template(&e.template, f);
                    }
                }
                Directive::For(d) => {
                    visit_traversals(&d.for_expr.collection_expr, f);
                    visit_template(&d.for_expr.template, f);
                }
            },
        }
    }
}

/// Names referenced as `local.<name>` in an expression (for ordering locals).
pub(crate) fn local_references(expr: &Expression) -> Vec<String> {
    let mut out = Vec::new();
    visit_traversals(expr, &mut |root, attr, _| {
        if let ("local", Some(name)) = (root, attr) {
            out.push(name.to_string());
        }
    });
    out
}

/// A value's HCL type name, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_with(src: &str, vars: &[(&str, Value)]) -> Result<Value, EvalError> {
        let text = format!("x = {src}\n");
        let body = hcl_edit::parser::parse_body(&text).expect("parses");
        let attr = body.get_attribute("x").unwrap();
        let mut ev = Evaluator::new(&text, false);
        ev.set_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        ev.set_locals(Map::new());
        ev.eval(&attr.value)
    }

    fn eval_str(src: &str) -> String {
        let m = Value::Object([("k".to_string(), Value::from("v"))].into_iter().collect());
        match eval_with(src, &[("dc", Value::from("eu")), ("n", Value::from(3)), ("m", m)]) {
            Ok(v) => funcs::value_to_json(&v).to_string(),
            Err(e) => format!("error: {}", e.message),
        }
    }

    #[test]
    fn runtime_interpolations_keep_their_exact_text() {
        let cases: &[(&str, &str)] = &[
            (r#""${NOMAD_PORT_http}""#, r#""${NOMAD_PORT_http}""#),
            (r#""foo-${attr.kernel.name}""#, r#""foo-${attr.kernel.name}""#),
            (r#""${env["BLAH"]}""#, r#""${env[\"BLAH\"]}""#),
            (
                r#""with spaces ${   root.  field[  "FOO"].5  }""#,
                r#""with spaces ${   root.  field[  \"FOO\"].5  }""#,
            ),
            (r#""${var.dc}-${node.unique.id}""#, r#""eu-${node.unique.id}""#),
            (r#""${upper(node.class)}""#, r#""${upper(node.class)}""#),
            ("meta.mytest", r#""${meta.mytest}""#),
            ("node.unique.name", r#""${node.unique.name}""#),
            (r#""$${literal}""#, r#""${literal}""#),
            (r#""${upper(var.dc)}-${var.n * 2}""#, r#""EU-6""#),
            (r#"[for s in ["a", "b"] : upper(s)]"#, r#"["A","B"]"#),
            (r#""%{ for s in ["a", "b"] }${s}%{ endfor }""#, r#""ab""#),
            (r#""%{ if node.x }y%{ endif }""#, r#""%{ if node.x }y%{ endif }""#),
            (
                r#"{ "a.b" = var.n, c = "${NOMAD_TASK_DIR}/x" }"#,
                r#"{"a.b":3,"c":"${NOMAD_TASK_DIR}/x"}"#,
            ),
            ("var.n > 2 ? \"big\" : \"small\"", r#""big""#),
            (r#"try(var.m.missing, "fallback")"#, r#""fallback""#),
            (r#"try(var.m.k, "fallback")"#, r#""v""#),
            (r#"[can(var.m.k), can(var.m.nope)]"#, "[true,false]"),
            (r#""${upper(try(var.m.nope, "d"))}""#, r#""D""#),
        ];
        for (src, want) in cases {
            assert_eq!(eval_str(src), *want, "{src}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("var.nope", "error: undeclared variable var.nope"),
            ("local.nope", "error: undeclared local value local.nope"),
            ("upper(node.class)", "error: `node.class` is only known when the task runs, so it cannot be used in an expression"),
            ("uper(\"x\")", "error: unknown function uper()"),
            (r#"try(var.m.a, var.m.b)"#, "error: try(): no argument could be evaluated; the last one failed with: no such key: `b`"),
            (r#"[for s in ["a"] : try(s, "x")]"#, "error: try() cannot be used inside a for expression"),
            (r#""x${[1]}""#, "error: cannot include a list in a string template"),
        ];
        for (src, want) in cases {
            assert_eq!(eval_str(src), *want, "{src}");
        }
    }

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("imagee", &["image", "pot", "tag"]), Some("image"));
        assert_eq!(closest("zzz", &["image", "pot", "tag"]), None);
    }
}
