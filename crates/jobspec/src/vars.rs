//! HCL2 input variables and locals: `variable` blocks, `variables {}` shorthand, `locals {}`, and
//! their values from defaults, `NOMAD_VAR_<name>`, var files and `-var` (in that order of
//! precedence, lowest first), converted to each variable's declared type and validated. It does
//! not look at the `job` block.

use crate::diag::{Diagnostic, Source, Span};
use crate::eval::{local_references, type_name, EvalError, Evaluator};
use crate::funcs;
use crate::ParseOptions;
use hcl::{Map, Value};
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::Span as _;

/// The prefix of environment variables that set input variables, as in Nomad.
pub(crate) const ENV_PREFIX: &str = "NOMAD_VAR_";

/// A declared type constraint (`type = list(string)`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Type {
    Any,
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(Vec<(String, Type)>),
    Tuple(Vec<Type>),
}

impl Type {
    fn is_primitive(&self) -> bool {
        matches!(self, Type::String | Type::Number | Type::Bool | Type::Any)
    }

    fn describe(&self) -> String {
        match self {
            Type::Any => "any".into(),
            Type::String => "string".into(),
            Type::Number => "number".into(),
            Type::Bool => "bool".into(),
            Type::List(t) => format!("list({})", t.describe()),
            Type::Set(t) => format!("set({})", t.describe()),
            Type::Map(t) => format!("map({})", t.describe()),
            Type::Object(fields) => {
                let inner: Vec<String> =
                    fields.iter().map(|(k, t)| format!("{k} = {}", t.describe())).collect();
                format!("object({{{}}})", inner.join(", "))
            }
            Type::Tuple(items) => {
                let inner: Vec<String> = items.iter().map(Type::describe).collect();
                format!("tuple([{}])", inner.join(", "))
            }
        }
    }
}

/// Converts a value to a type, as HCL's type conversion does (numbers and bools become strings,
/// numeric strings become numbers, and so on).
pub(crate) fn convert(value: &Value, ty: &Type) -> Result<Value, String> {
    let mismatch = || match value {
        Value::String(s) => format!("expected {}, got string \"{s}\"", ty.describe()),
        other => format!("expected {}, got {}", ty.describe(), type_name(other)),
    };
    match (ty, value) {
        (Type::Any, v) => Ok(v.clone()),
        (_, Value::Null) => Ok(Value::Null),
        (Type::String, v) => funcs::primitive_string(v).map(Value::String).ok_or_else(mismatch),
        (Type::Number, Value::Number(_)) => Ok(value.clone()),
        (Type::Number, Value::String(s)) => {
            s.trim().parse::<f64>().map(funcs::num).map_err(|_| mismatch())
        }
        (Type::Bool, Value::Bool(_)) => Ok(value.clone()),
        (Type::Bool, Value::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (Type::List(t), Value::Array(items)) => {
            items.iter().map(|v| convert(v, t)).collect::<Result<_, _>>().map(Value::Array)
        }
        (Type::Set(t), Value::Array(items)) => {
            let mut out: Vec<Value> = Vec::new();
            for v in items {
                let v = convert(v, t)?;
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        (Type::Map(t), Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), convert(v, t).map_err(|e| format!("element {k:?}: {e}"))?);
            }
            Ok(Value::Object(out))
        }
        (Type::Object(fields), Value::Object(m)) => {
            let mut out = Map::new();
            for (name, t) in fields {
                let v = m.get(name).ok_or_else(|| format!("attribute {name:?} is required"))?;
                out.insert(
                    name.clone(),
                    convert(v, t).map_err(|e| format!("attribute {name:?}: {e}"))?,
                );
            }
            Ok(Value::Object(out))
        }
        (Type::Tuple(types), Value::Array(items)) if types.len() == items.len() => items
            .iter()
            .zip(types)
            .map(|(v, t)| convert(v, t))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        _ => Err(mismatch()),
    }
}

/// Parses a type expression.
fn parse_type(expr: &Expression) -> Result<Type, EvalError> {
    let span = expr.span().unwrap_or_default();
    let bad = |what: &str| EvalError {
        span: span.clone(),
        message: format!("invalid type {what}"),
        hint: Some(
            "use string, number, bool, any, list(T), set(T), map(T), object({...}) or tuple([...])"
                .into(),
        ),
        already_reported: false,
    };
    match expr {
        Expression::Variable(v) => match v.as_str() {
            "string" => Ok(Type::String),
            "number" => Ok(Type::Number),
            "bool" => Ok(Type::Bool),
            "any" => Ok(Type::Any),
            other => Err(bad(&format!("`{other}`"))),
        },
        Expression::FuncCall(call) => {
            let name = call.name.name.as_str();
            let arg = match call.args.iter().collect::<Vec<_>>().as_slice() {
                [one] => *one,
                _ => return Err(bad(&format!("`{name}(...)`: it takes exactly one argument"))),
            };
            match name {
                "list" => Ok(Type::List(Box::new(parse_type(arg)?))),
                "set" => Ok(Type::Set(Box::new(parse_type(arg)?))),
                "map" => Ok(Type::Map(Box::new(parse_type(arg)?))),
                "object" => {
                    let Expression::Object(o) = arg else {
                        return Err(bad("`object(...)`: expected { name = type }"));
                    };
                    let mut fields = Vec::new();
                    for (k, v) in o.iter() {
                        let key = match k {
                            ObjectKey::Ident(i) => i.as_str().to_string(),
                            ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
                            ObjectKey::Expression(Expression::Variable(v)) => {
                                v.as_str().to_string()
                            }
                            ObjectKey::Expression(_) => {
                                return Err(bad("`object(...)`: keys must be names"))
                            }
                        };
                        fields.push((key, parse_type(v.expr())?));
                    }
                    Ok(Type::Object(fields))
                }
                "tuple" => {
                    let Expression::Array(a) = arg else {
                        return Err(bad("`tuple(...)`: expected [type, ...]"));
                    };
                    Ok(Type::Tuple(a.iter().map(parse_type).collect::<Result<_, _>>()?))
                }
                other => Err(bad(&format!("`{other}(...)`"))),
            }
        }
        _ => Err(bad("expression")),
    }
}

struct Declared<'a> {
    name: String,
    span: Span,
    ty: Type,
    default: Option<Value>,
    /// The default was written but could not be evaluated (already reported).
    default_failed: bool,
    validations: Vec<(&'a Attribute, Option<&'a Attribute>)>,
}

/// The evaluated `var` and `local` tables.
pub(crate) struct Resolved {
    pub vars: Map<String, Value>,
    pub locals: Map<String, Value>,
    /// `var.x`/`local.y` whose value could not be determined; their errors were reported.
    pub failed: Vec<String>,
}

/// Reads every `variable`, `variables` and `locals` block of `body`, reporting problems in `diags`.
pub(crate) fn resolve(
    src: &Source,
    body: &Body,
    opts: &ParseOptions,
    diags: &mut Vec<Diagnostic>,
) -> Resolved {
    let plain = Evaluator::new(src.text, opts.allow_fs);
    let report = |diags: &mut Vec<Diagnostic>, e: EvalError| {
        if e.already_reported {
            return;
        }
        let mut d = src.diag(&e.span, e.message);
        d.hint = e.hint;
        diags.push(d);
    };
    let mut declared: Vec<Declared> = Vec::new();
    let mut local_attrs: Vec<&Attribute> = Vec::new();
    for structure in body.iter() {
        let Structure::Block(block) = structure else { continue };
        match block.ident.as_str() {
            "variable" => {
                if let Some(d) = declare_variable(src, &plain, block, diags) {
                    if let Some(prev) = declared.iter().find(|p| p.name == d.name) {
                        let (line, _) = src.position(prev.span.start);
                        diags.push(src.diag(
                            &d.span,
                            format!(
                                "variable \"{}\" is declared twice (first on line {line})",
                                d.name
                            ),
                        ));
                    } else {
                        declared.push(d);
                    }
                }
            }
            "variables" => {
                for s in block.body.iter() {
                    match s {
                        Structure::Attribute(a) => {
                            let default = match plain.eval(&a.value) {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    report(diags, e);
                                    None
                                }
                            };
                            declared.push(Declared {
                                name: a.key.as_str().to_string(),
                                span: a.key.span().unwrap_or_default(),
                                ty: Type::Any,
                                default_failed: default.is_none(),
                                default,
                                validations: Vec::new(),
                            });
                        }
                        Structure::Block(b) => diags.push(
                            src.diag(
                                &b.ident.span().unwrap_or_default(),
                                "blocks are not allowed in a variables block",
                            )
                            .with_hint(
                                "write `name = value`, or use a `variable \"name\" { ... }` block",
                            ),
                        ),
                    }
                }
            }
            "locals" => {
                for s in block.body.iter() {
                    match s {
                        Structure::Attribute(a) => local_attrs.push(a),
                        Structure::Block(b) => diags.push(src.diag(
                            &b.ident.span().unwrap_or_default(),
                            "blocks are not allowed in a locals block",
                        )),
                    }
                }
            }
            _ => {}
        }
    }

    // Values from outside the file, lowest precedence first; later sources overwrite.
    let mut given: Map<String, Value> = Map::new();
    for d in &declared {
        if let Some(raw) = opts.env.get(&format!("{ENV_PREFIX}{}", d.name)) {
            match from_cli_string(raw, &d.ty) {
                Ok(v) => {
                    given.insert(d.name.clone(), v);
                }
                Err(e) => diags.push(Diagnostic::without_position(
                    src.file,
                    format!(
                        "invalid value for variable \"{}\" from {ENV_PREFIX}{}: {e}",
                        d.name, d.name
                    ),
                )),
            }
        }
    }
    for path in &opts.var_files {
        read_var_file(path, opts, &declared, &mut given, diags);
    }
    for (name, raw) in &opts.vars {
        match declared.iter().find(|d| &d.name == name) {
            Some(d) => match from_cli_string(raw, &d.ty) {
                Ok(v) => {
                    given.insert(name.clone(), v);
                }
                Err(e) => diags.push(Diagnostic::without_position(
                    src.file,
                    format!("invalid value for variable \"{name}\" from -var: {e}"),
                )),
            },
            None => diags.push(
                Diagnostic::without_position(
                    src.file,
                    format!("-var {name}=...: variable \"{name}\" is not declared in the job file"),
                )
                .with_hint(format!("declare it with `variable \"{name}\" {{}}`")),
            ),
        }
    }

    let mut vars = Map::new();
    let mut failed: Vec<String> = Vec::new();
    for d in &declared {
        let value = match given.get(&d.name).cloned().or_else(|| d.default.clone()) {
            Some(v) => v,
            None if d.default_failed => {
                failed.push(format!("var.{}", d.name));
                continue;
            }
            None => {
                failed.push(format!("var.{}", d.name));
                diags.push(src.diag(&d.span, format!("Unset variable \"{}\"", d.name)).with_hint(format!(
                    "give it a value with -var {0}=..., a var file, or the environment variable {ENV_PREFIX}{0}, or add a default",
                    d.name
                )));
                continue;
            }
        };
        match convert(&value, &d.ty) {
            Ok(v) => {
                vars.insert(d.name.clone(), v);
            }
            Err(e) => {
                failed.push(format!("var.{}", d.name));
                diags.push(
                    src.diag(&d.span, format!("invalid value for variable \"{}\": {e}", d.name)),
                );
            }
        }
    }

    let mut with_vars = Evaluator::new(src.text, opts.allow_fs);
    with_vars.set_vars(vars.clone());
    with_vars.set_locals(Map::new());
    with_vars.set_failed(failed.clone());
    for d in &declared {
        if !vars.contains_key(&d.name) {
            continue;
        }
        for (condition, message) in &d.validations {
            match with_vars.eval(&condition.value) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    let text = message
                        .and_then(|m| with_vars.eval(&m.value).ok())
                        .and_then(|v| funcs::primitive_string(&v))
                        .unwrap_or_else(|| "validation failed".into());
                    diags.push(
                        src.diag(
                            &condition.value.span().unwrap_or_default(),
                            format!("invalid value for variable \"{}\": {text}", d.name),
                        )
                        .with_hint("this check comes from the variable's validation block"),
                    );
                }
                Ok(other) => diags.push(src.diag(
                    &condition.value.span().unwrap_or_default(),
                    format!("validation condition must be a bool, got {}", type_name(&other)),
                )),
                Err(e) => report(diags, e),
            }
        }
    }

    let locals = resolve_locals(src, &vars, &local_attrs, opts, &mut failed, diags);
    Resolved { vars, locals, failed }
}

fn declare_variable<'a>(
    src: &Source,
    plain: &Evaluator,
    block: &'a Block,
    diags: &mut Vec<Diagnostic>,
) -> Option<Declared<'a>> {
    let ident_span = block.ident.span().unwrap_or_default();
    let [label] = block.labels.as_slice() else {
        diags.push(
            src.diag(&ident_span, "a variable block needs exactly one label, its name")
                .with_hint("write `variable \"name\" { ... }`"),
        );
        return None;
    };
    let mut d = Declared {
        name: label.as_str().to_string(),
        span: label.span().unwrap_or(ident_span),
        ty: Type::Any,
        default: None,
        default_failed: false,
        validations: Vec::new(),
    };
    for s in block.body.iter() {
        match s {
            Structure::Attribute(a) => match a.key.as_str() {
                "type" => match parse_type(&a.value) {
                    Ok(t) => d.ty = t,
                    Err(e) => diags
                        .push(src.diag(&e.span, e.message).with_hint(e.hint.unwrap_or_default())),
                },
                "default" => match plain.eval(&a.value) {
                    Ok(v) => d.default = Some(v),
                    Err(e) => {
                        d.default_failed = true;
                        let mut diag = src.diag(&e.span, e.message);
                        diag.hint = e.hint;
                        diags.push(diag);
                    }
                },
                "description" | "sensitive" | "nullable" => {}
                other => diags.push(
                    src.diag(
                        &a.key.span().unwrap_or_default(),
                        format!("unknown attribute \"{other}\" in variable block"),
                    )
                    .with_hint("valid keys are: default, description, type, validation"),
                ),
            },
            Structure::Block(b) if b.ident.as_str() == "validation" => {
                let cond = b.body.get_attribute("condition");
                let msg = b.body.get_attribute("error_message");
                match cond {
                    Some(c) => d.validations.push((c, msg)),
                    None => diags.push(src.diag(
                        &b.ident.span().unwrap_or_default(),
                        "validation block needs a condition",
                    )),
                }
                for s in b.body.iter() {
                    let (name, span) = match s {
                        Structure::Attribute(a) => (a.key.as_str(), a.key.span()),
                        Structure::Block(b) => (b.ident.as_str(), b.ident.span()),
                    };
                    if name != "condition" && name != "error_message" {
                        diags.push(
                            src.diag(
                                &span.unwrap_or_default(),
                                format!("unknown attribute \"{name}\" in validation block"),
                            )
                            .with_hint("valid keys are: condition, error_message"),
                        );
                    }
                }
            }
            Structure::Block(b) => diags.push(
                src.diag(
                    &b.ident.span().unwrap_or_default(),
                    format!("unknown block \"{}\" in variable block", b.ident.as_str()),
                )
                .with_hint("valid keys are: default, description, type, validation"),
            ),
        }
    }
    if let Some(default) = &d.default {
        if let Err(e) = convert(default, &d.ty) {
            diags.push(src.diag(
                &d.span,
                format!("default of variable \"{}\" does not match its type: {e}", d.name),
            ));
        }
    }
    Some(d)
}

/// A `-var` or environment value: primitive types take the string as is; complex types parse
/// it as an HCL expression, as Nomad does.
fn from_cli_string(raw: &str, ty: &Type) -> Result<Value, String> {
    if ty.is_primitive() {
        return Ok(Value::String(raw.to_string()));
    }
    let expr = hcl_edit::parser::parse_expr(raw)
        .map_err(|e| format!("not a valid HCL value: {}", e.message()))?;
    let ev = Evaluator::new(raw, false);
    ev.eval(&expr).map_err(|e| e.message)
}

fn read_var_file(
    path: &std::path::Path,
    opts: &ParseOptions,
    declared: &[Declared],
    given: &mut Map<String, Value>,
    diags: &mut Vec<Diagnostic>,
) {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::without_position(&file, format!("cannot read var file: {e}")));
            return;
        }
    };
    let src = Source::new(&file, &text);
    let mut entries: Vec<(String, Span, Result<Value, EvalError>)> = Vec::new();
    if path.extension().is_some_and(|e| e == "json") {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    entries.push((k, 0..0, Ok(funcs::json_to_value(&v))));
                }
            }
            Ok(_) => diags
                .push(Diagnostic::without_position(&file, "a JSON var file must hold one object")),
            Err(e) => diags.push(src.diag_at(e.line(), e.column(), format!("invalid JSON: {e}"))),
        }
    } else {
        let quotes = crate::quotes::check(&src);
        if !quotes.is_empty() {
            diags.extend(quotes);
            return;
        }
        let body = match hcl_edit::parser::parse_body(&text) {
            Ok(b) => b,
            Err(e) => {
                diags.push(crate::parse_error(&src, &e));
                return;
            }
        };
        let ev = Evaluator::new(&text, opts.allow_fs);
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => entries.push((
                    a.key.as_str().to_string(),
                    a.key.span().unwrap_or_default(),
                    ev.eval(&a.value),
                )),
                Structure::Block(b) => diags.push(
                    src.diag(
                        &b.ident.span().unwrap_or_default(),
                        "a var file holds only `name = value` lines",
                    )
                    .with_hint("blocks such as variable or job belong in the job file"),
                ),
            }
        }
    }
    for (name, span, value) in entries {
        let Some(d) = declared.iter().find(|d| d.name == name) else {
            diags.push(
                src.diag(&span, format!("variable \"{name}\" is set in the var file but not declared in the job file"))
                    .with_hint(format!("declare it with `variable \"{name}\" {{}}`, or remove it")),
            );
            continue;
        };
        match value {
            Ok(v) => {
                given.insert(d.name.clone(), v);
            }
            Err(e) => {
                let mut diag = src.diag(&e.span, e.message);
                diag.hint = e.hint;
                diags.push(diag);
            }
        }
    }
}

/// Evaluates locals in dependency order, so a local may use another defined anywhere.
fn resolve_locals(
    src: &Source,
    vars: &Map<String, Value>,
    attrs: &[&Attribute],
    opts: &ParseOptions,
    failed_refs: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) -> Map<String, Value> {
    let mut locals = Map::new();
    let mut pending: Vec<&Attribute> = Vec::new();
    for a in attrs {
        if pending.iter().any(|p| p.key.as_str() == a.key.as_str()) {
            diags.push(src.diag(
                &a.key.span().unwrap_or_default(),
                format!("local value \"{}\" is defined twice", a.key.as_str()),
            ));
        } else {
            pending.push(a);
        }
    }
    let names: Vec<String> = pending.iter().map(|a| a.key.as_str().to_string()).collect();
    let mut failed: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|a| {
            local_references(&a.value)
                .iter()
                .all(|r| locals.contains_key(r) || failed.contains(r) || !names.contains(r))
        });
        let Some(i) = ready else {
            let names: Vec<&str> = pending.iter().map(|a| a.key.as_str()).collect();
            for a in &pending {
                failed_refs.push(format!("local.{}", a.key.as_str()));
                diags.push(
                    src.diag(
                        &a.key.span().unwrap_or_default(),
                        format!("local value \"{}\" is part of a reference cycle", a.key.as_str()),
                    )
                    .with_hint(format!(
                        "these locals refer to each other in a circle: {}",
                        names.join(", ")
                    )),
                );
            }
            break;
        };
        let a = pending.remove(i);
        let name = a.key.as_str().to_string();
        if local_references(&a.value).iter().any(|r| failed.contains(r)) {
            failed_refs.push(format!("local.{name}"));
            failed.push(name);
            continue;
        }
        let mut ev = Evaluator::new(src.text, opts.allow_fs);
        ev.set_vars(vars.clone());
        ev.set_locals(locals.clone());
        ev.set_failed(failed_refs.clone());
        match ev.eval(&a.value) {
            Ok(v) => {
                locals.insert(name, v);
            }
            Err(e) => {
                failed_refs.push(format!("local.{name}"));
                failed.push(name);
                if !e.already_reported {
                    let mut d = src.diag(&e.span, e.message);
                    d.hint = e.hint;
                    diags.push(d);
                }
            }
        }
    }
    locals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(src: &str) -> Type {
        let text = format!("t = {src}");
        let body = hcl_edit::parser::parse_body(&text).unwrap();
        parse_type(&body.get_attribute("t").unwrap().value).unwrap()
    }

    #[test]
    fn converts_values_like_hcl() {
        let cases: Vec<(Type, Value, Result<Value, String>)> = vec![
            (Type::String, Value::from(5), Ok(Value::from("5"))),
            (Type::Number, Value::from("42"), Ok(Value::from(42))),
            (Type::Number, Value::from("x"), Err("expected number, got string \"x\"".into())),
            (Type::Bool, Value::from("true"), Ok(Value::Bool(true))),
            (
                ty("list(string)"),
                Value::Array(vec![1.into(), "a".into()]),
                Ok(Value::Array(vec!["1".into(), "a".into()])),
            ),
            (
                ty("set(number)"),
                Value::Array(vec![1.into(), 1.into()]),
                Ok(Value::Array(vec![1.into()])),
            ),
            (
                ty("map(number)"),
                Value::Object([("a".to_string(), Value::from("x"))].into_iter().collect()),
                Err("element \"a\": expected number, got string \"x\"".into()),
            ),
            (
                ty("object({ a = string, b = number })"),
                Value::Object([("a".to_string(), Value::from(1))].into_iter().collect()),
                Err("attribute \"b\" is required".into()),
            ),
            (
                ty("tuple([string, bool])"),
                Value::Array(vec!["a".into(), true.into()]),
                Ok(Value::Array(vec!["a".into(), true.into()])),
            ),
        ];
        for (t, v, want) in cases {
            assert_eq!(convert(&v, &t), want, "{t:?} {v:?}");
        }
    }

    #[test]
    fn cli_strings_parse_as_hcl_for_complex_types() {
        assert_eq!(
            from_cli_string("[\"a\", \"b\"]", &ty("list(string)")),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
        assert!(from_cli_string("[\"a\"", &ty("list(string)"))
            .unwrap_err()
            .starts_with("not a valid HCL value"));
        assert_eq!(from_cli_string("3", &Type::Number), Ok(Value::from("3")));
    }
}
