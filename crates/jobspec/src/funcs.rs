//! The HCL function library available in job files (Nomad's `jobspec2/functions.go` subset):
//! string, collection, encoding and math functions. Filesystem functions are registered only when
//! the caller allows filesystem access. This module knows nothing of jobs or diagnostics.

use base64::Engine as _;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

type R = Result<Value, String>;

/// Registers every function on `ctx`.
pub(crate) fn declare(ctx: &mut Context<'static>, allow_fs: bool) {
    for (name, def) in defs(allow_fs) {
        ctx.declare_func(name, def);
    }
}

/// Names of the functions available without filesystem access, for "did you mean" hints.
pub(crate) fn names() -> Vec<&'static str> {
    defs(false).into_iter().map(|(name, _)| name).collect()
}

/// Every function definition; filesystem ones only when allowed.
fn defs(allow_fs: bool) -> Vec<(&'static str, FuncDef)> {
    use ParamType::{Any, Number as N, String as S};
    let list_any = || ParamType::array_of(Any);
    let obj_any = || ParamType::object_of(Any);
    let fixed = |params: Vec<ParamType>, f| FuncDef::new(f, params);
    let variadic = |params: Vec<ParamType>, var: ParamType, f| {
        FuncDef::builder().params(params).variadic_param(var).build(f)
    };
    let mut defs: Vec<(&'static str, FuncDef)> = vec![
        // Strings.
        ("upper", fixed(vec![S], upper)),
        ("lower", fixed(vec![S], lower)),
        ("format", variadic(vec![S], Any, format)),
        ("formatlist", variadic(vec![S], Any, formatlist)),
        ("join", variadic(vec![S], list_any(), join)),
        ("split", fixed(vec![S, S], split)),
        ("replace", fixed(vec![S, S, S], replace)),
        ("regex_replace", fixed(vec![S, S, S], regex_replace)),
        ("trim", fixed(vec![S, S], trim)),
        ("trimspace", fixed(vec![S], trimspace)),
        ("trimprefix", fixed(vec![S, S], trimprefix)),
        ("trimsuffix", fixed(vec![S, S], trimsuffix)),
        ("substr", fixed(vec![S, N, N], substr)),
        ("strlen", fixed(vec![S], strlen)),
        ("strrev", fixed(vec![S], strrev)),
        ("title", fixed(vec![S], title)),
        ("chomp", fixed(vec![S], chomp)),
        ("indent", fixed(vec![N, S], indent)),
        // Collections.
        ("concat", variadic(vec![], list_any(), concat)),
        ("contains", fixed(vec![list_any(), Any], contains)),
        ("distinct", fixed(vec![list_any()], distinct)),
        ("element", fixed(vec![list_any(), N], element)),
        ("flatten", fixed(vec![list_any()], flatten)),
        ("keys", fixed(vec![obj_any()], keys)),
        ("values", fixed(vec![obj_any()], values)),
        ("length", fixed(vec![Any], length)),
        ("lookup", variadic(vec![obj_any(), S], Any, lookup)),
        ("merge", variadic(vec![], ParamType::nullable(obj_any()), merge)),
        ("range", variadic(vec![N], N, range)),
        ("reverse", fixed(vec![list_any()], reverse)),
        ("slice", fixed(vec![list_any(), N, N], slice)),
        ("sort", fixed(vec![list_any()], sort)),
        ("zipmap", fixed(vec![list_any(), list_any()], zipmap)),
        ("coalesce", variadic(vec![], Any, coalesce)),
        ("coalescelist", variadic(vec![], list_any(), coalescelist)),
        ("compact", fixed(vec![list_any()], compact)),
        ("index", fixed(vec![list_any(), Any], index)),
        ("setunion", variadic(vec![], list_any(), setunion)),
        ("setintersection", variadic(vec![list_any()], list_any(), setintersection)),
        ("setproduct", variadic(vec![], list_any(), setproduct)),
        ("chunklist", fixed(vec![list_any(), N], chunklist)),
        // Encoding.
        ("base64encode", fixed(vec![S], base64encode)),
        ("base64decode", fixed(vec![S], base64decode)),
        ("jsonencode", fixed(vec![Any], jsonencode)),
        ("jsondecode", fixed(vec![S], jsondecode)),
        ("urlencode", fixed(vec![S], urlencode)),
        ("csvdecode", fixed(vec![S], csvdecode)),
        // Type conversion.
        ("tostring", fixed(vec![Any], tostring)),
        ("tonumber", fixed(vec![Any], tonumber)),
        ("tobool", fixed(vec![Any], tobool)),
        ("tolist", fixed(vec![list_any()], identity)),
        ("toset", fixed(vec![list_any()], distinct)),
        ("tomap", fixed(vec![obj_any()], identity)),
        // Math.
        ("abs", fixed(vec![N], abs)),
        ("ceil", fixed(vec![N], ceil)),
        ("floor", fixed(vec![N], floor)),
        ("log", fixed(vec![N, N], log)),
        ("max", variadic(vec![N], N, max)),
        ("min", variadic(vec![N], N, min)),
        ("pow", fixed(vec![N, N], pow)),
        ("signum", fixed(vec![N], signum)),
        ("parseint", fixed(vec![Any, N], parseint)),
    ];
    if allow_fs {
        defs.push(("file", fixed(vec![S], file)));
        defs.push(("fileexists", fixed(vec![S], fileexists)));
        defs.push(("basename", fixed(vec![S], basename)));
        defs.push(("dirname", fixed(vec![S], dirname)));
        defs.push(("filebase64", fixed(vec![S], filebase64)));
        defs.push(("abspath", fixed(vec![S], abspath)));
        defs.push(("pathexpand", fixed(vec![S], pathexpand)));
    }
    defs
}

/// Filesystem functions, available only with `allow_fs`.
pub(crate) const FS_NAMES: &[&str] =
    &["abspath", "basename", "dirname", "file", "filebase64", "fileexists", "pathexpand"];

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn f(v: &Value) -> f64 {
    v.as_number().and_then(Number::as_f64).unwrap_or(0.0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A number as HCL shows it: integral values stay integers.
pub(crate) fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::Number(Number::from(x as i64))
    } else {
        Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn int(v: &Value, what: &str) -> Result<i64, String> {
    let x = f(v);
    if x.fract() != 0.0 {
        return Err(format!("{what} must be a whole number, got {x}"));
    }
    Ok(x as i64)
}

/// The string form of a primitive, as HCL converts it for string contexts.
pub(crate) fn primitive_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn upper(a: FuncArgs) -> R {
    Ok(s(&a[0]).to_uppercase().into())
}

fn lower(a: FuncArgs) -> R {
    Ok(s(&a[0]).to_lowercase().into())
}

fn format(a: FuncArgs) -> R {
    sprintf(s(&a[0]), &a[1..]).map(Value::from)
}

fn formatlist(a: FuncArgs) -> R {
    // Lists are iterated in step; other arguments repeat on every row.
    let rows = a[1..].iter().filter_map(Value::as_array).map(Vec::len).max().unwrap_or(1);
    let lens: Vec<usize> = a[1..].iter().filter_map(Value::as_array).map(Vec::len).collect();
    if lens.iter().any(|&n| n != rows) {
        return Err("all list arguments must have the same length".into());
    }
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let row: Vec<Value> = a[1..]
            .iter()
            .map(|v| match v {
                Value::Array(items) => items[i].clone(),
                other => other.clone(),
            })
            .collect();
        out.push(Value::from(sprintf(s(&a[0]), &row)?));
    }
    Ok(Value::Array(out))
}

/// `format`'s verbs: %s %d %f %e %g %t %q %v %x %X %o %b %%, with flags `-`, `0`, `+`, width and
/// precision, as cty's stdlib does.
fn sprintf(fmt: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let verb = chars.next().ok_or("format string ends with a lone %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next_arg)
            .ok_or_else(|| format!("not enough arguments for format string {fmt:?}"))?;
        next_arg += 1;
        let number = || {
            arg.as_number()
                .and_then(Number::as_f64)
                .ok_or(format!("%{verb} needs a number, got {arg}"))
        };
        let mut text = match verb {
            's' => primitive_string(arg).ok_or(format!("%s needs a string, got {arg}"))?,
            'v' => primitive_string(arg).unwrap_or_else(|| value_to_json(arg).to_string()),
            'q' => serde_json::Value::String(primitive_string(arg).ok_or("%q needs a string")?)
                .to_string(),
            't' => arg.as_bool().ok_or(format!("%t needs a bool, got {arg}"))?.to_string(),
            'd' => {
                let x = number()?;
                if x.fract() != 0.0 {
                    return Err(format!("%d needs a whole number, got {x}"));
                }
                let mut t = (x as i64).to_string();
                if plus && x >= 0.0 {
                    t.insert(0, '+');
                }
                t
            }
            'f' => format!("{:.*}", precision.unwrap_or(6), number()?),
            'e' => format!("{:.*e}", precision.unwrap_or(6), number()?),
            'g' => num(number()?).to_string(),
            'x' => format!("{:x}", number()? as i64),
            'X' => format!("{:X}", number()? as i64),
            'o' => format!("{:o}", number()? as i64),
            'b' => format!("{:b}", number()? as i64),
            other => return Err(format!("unsupported format verb %{other}")),
        };
        if verb == 's' {
            if let Some(p) = precision {
                text = text.chars().take(p).collect();
            }
        }
        let width: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len < width {
            let pad = width - len;
            if left {
                text.push_str(&" ".repeat(pad));
            } else if zero && matches!(verb, 'd' | 'f' | 'e' | 'x' | 'X' | 'o' | 'b') {
                let sign = text.starts_with(['-', '+']);
                let at = usize::from(sign);
                text.insert_str(at, &"0".repeat(pad));
            } else {
                text.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&text);
    }
    if next_arg < args.len() {
        return Err(format!("too many arguments for format string {fmt:?}"));
    }
    Ok(out)
}

fn join(a: FuncArgs) -> R {
    let mut parts = Vec::new();
    for l in &a[1..] {
        for v in list(l) {
            parts.push(primitive_string(v).ok_or(format!("join needs strings, got {v}"))?);
        }
    }
    Ok(parts.join(s(&a[0])).into())
}

fn split(a: FuncArgs) -> R {
    let (sep, text) = (s(&a[0]), s(&a[1]));
    if text.is_empty() {
        return Ok(Value::Array(vec![Value::from("")]));
    }
    Ok(Value::Array(text.split(sep).map(Value::from).collect()))
}

fn replace(a: FuncArgs) -> R {
    let (text, search, with) = (s(&a[0]), s(&a[1]), s(&a[2]));
    // Terraform's convention: a search string wrapped in slashes is a regular expression.
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        let re = regex::Regex::new(&search[1..search.len() - 1]).map_err(|e| e.to_string())?;
        return Ok(re.replace_all(text, with).into_owned().into());
    }
    Ok(text.replace(search, with).into())
}

fn regex_replace(a: FuncArgs) -> R {
    let re = regex::Regex::new(s(&a[1])).map_err(|e| e.to_string())?;
    Ok(re.replace_all(s(&a[0]), s(&a[2])).into_owned().into())
}

fn trim(a: FuncArgs) -> R {
    let cut: Vec<char> = s(&a[1]).chars().collect();
    Ok(s(&a[0]).trim_matches(cut.as_slice()).into())
}

fn trimspace(a: FuncArgs) -> R {
    Ok(s(&a[0]).trim().into())
}

fn trimprefix(a: FuncArgs) -> R {
    let (text, p) = (s(&a[0]), s(&a[1]));
    Ok(text.strip_prefix(p).unwrap_or(text).into())
}

fn trimsuffix(a: FuncArgs) -> R {
    let (text, p) = (s(&a[0]), s(&a[1]));
    Ok(text.strip_suffix(p).unwrap_or(text).into())
}

fn substr(a: FuncArgs) -> R {
    let chars: Vec<char> = s(&a[0]).chars().collect();
    let n = chars.len() as i64;
    let mut offset = int(&a[1], "offset")?;
    let length = int(&a[2], "length")?;
    if offset < 0 {
        offset += n;
    }
    if offset < 0 || offset > n {
        return Err(format!("offset {offset} is out of range for a string of length {n}"));
    }
    let end = if length < 0 { n } else { (offset + length).min(n) };
    Ok(chars[offset as usize..end as usize].iter().collect::<String>().into())
}

fn strlen(a: FuncArgs) -> R {
    Ok(num(s(&a[0]).chars().count() as f64))
}

fn strrev(a: FuncArgs) -> R {
    Ok(s(&a[0]).chars().rev().collect::<String>().into())
}

fn title(a: FuncArgs) -> R {
    let mut out = String::new();
    let mut at_word_start = true;
    for c in s(&a[0]).chars() {
        if at_word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric();
    }
    Ok(out.into())
}

fn chomp(a: FuncArgs) -> R {
    Ok(s(&a[0]).trim_end_matches(['\n', '\r']).into())
}

/// Every line but the first gets the padding, as cty's `indent` does (blank lines included).
fn indent(a: FuncArgs) -> R {
    let pad = " ".repeat(int(&a[0], "spaces")?.max(0) as usize);
    Ok(s(&a[1]).replace('\n', &format!("\n{pad}")).into())
}

fn concat(a: FuncArgs) -> R {
    Ok(Value::Array(a.iter().flat_map(|l| list(l).iter().cloned()).collect()))
}

fn contains(a: FuncArgs) -> R {
    Ok(list(&a[0]).contains(&a[1]).into())
}

fn distinct(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in list(&a[0]) {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn element(a: FuncArgs) -> R {
    let items = list(&a[0]);
    if items.is_empty() {
        return Err("cannot use element function with an empty list".into());
    }
    let i = int(&a[1], "index")?;
    if i < 0 {
        return Err("index must not be negative".into());
    }
    Ok(items[i as usize % items.len()].clone())
}

fn flatten(a: FuncArgs) -> R {
    fn walk(v: &[Value], out: &mut Vec<Value>) {
        for item in v {
            match item {
                Value::Array(inner) => walk(inner, out),
                other => out.push(other.clone()),
            }
        }
    }
    let mut out = Vec::new();
    walk(list(&a[0]), &mut out);
    Ok(Value::Array(out))
}

fn sorted_entries(v: &Value) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = v.as_object().map(|m| m.iter().collect()).unwrap_or_default();
    entries.sort_by(|x, y| x.0.cmp(y.0));
    entries
}

fn keys(a: FuncArgs) -> R {
    Ok(Value::Array(sorted_entries(&a[0]).into_iter().map(|(k, _)| k.clone().into()).collect()))
}

fn values(a: FuncArgs) -> R {
    Ok(Value::Array(sorted_entries(&a[0]).into_iter().map(|(_, v)| v.clone()).collect()))
}

fn length(a: FuncArgs) -> R {
    let n = match &a[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(v) => v.len(),
        Value::Object(m) => m.len(),
        other => return Err(format!("length needs a string, list or map, got {other}")),
    };
    Ok(num(n as f64))
}

fn lookup(a: FuncArgs) -> R {
    if a.len() > 3 {
        return Err("lookup takes a map, a key and an optional default".into());
    }
    match a[0].as_object().and_then(|m| m.get(s(&a[1]))) {
        Some(v) => Ok(v.clone()),
        None => a.get(2).cloned().ok_or_else(|| format!("the map has no key {:?}", s(&a[1]))),
    }
}

fn merge(a: FuncArgs) -> R {
    let mut out = Map::new();
    for m in a.iter().filter_map(Value::as_object) {
        for (k, v) in m {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn range(a: FuncArgs) -> R {
    let nums: Vec<f64> = a.iter().map(f).collect();
    let (start, end, step) = match nums.as_slice() {
        [end] => (0.0, *end, 1.0),
        [start, end] => (*start, *end, if end >= start { 1.0 } else { -1.0 }),
        [start, end, step] => (*start, *end, *step),
        _ => return Err("range takes one to three numbers".into()),
    };
    if step == 0.0 {
        return Err("step must not be zero".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(num(x));
        if out.len() > 1024 {
            return Err("range would produce more than 1024 elements".into());
        }
        x += step;
    }
    Ok(Value::Array(out))
}

fn reverse(a: FuncArgs) -> R {
    Ok(Value::Array(list(&a[0]).iter().rev().cloned().collect()))
}

fn slice(a: FuncArgs) -> R {
    let items = list(&a[0]);
    let (start, end) = (int(&a[1], "start index")?, int(&a[2], "end index")?);
    if start < 0 || end < start || end as usize > items.len() {
        return Err(format!(
            "slice bounds {start}..{end} out of range for a list of {}",
            items.len()
        ));
    }
    Ok(Value::Array(items[start as usize..end as usize].to_vec()))
}

fn sort(a: FuncArgs) -> R {
    let mut strings = Vec::new();
    for v in list(&a[0]) {
        strings.push(primitive_string(v).ok_or(format!("sort needs strings, got {v}"))?);
    }
    strings.sort();
    Ok(Value::Array(strings.into_iter().map(Value::from).collect()))
}

fn zipmap(a: FuncArgs) -> R {
    let (ks, vs) = (list(&a[0]), list(&a[1]));
    if ks.len() != vs.len() {
        return Err(format!("{} keys but {} values", ks.len(), vs.len()));
    }
    let mut out = Map::new();
    for (k, v) in ks.iter().zip(vs) {
        out.insert(primitive_string(k).ok_or("keys must be strings")?, v.clone());
    }
    Ok(Value::Object(out))
}

fn coalesce(a: FuncArgs) -> R {
    a.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".into())
}

fn coalescelist(a: FuncArgs) -> R {
    a.iter()
        .find(|v| !list(v).is_empty())
        .cloned()
        .ok_or_else(|| "no non-empty list arguments".into())
}

fn compact(a: FuncArgs) -> R {
    Ok(Value::Array(
        list(&a[0]).iter().filter(|v| !v.is_null() && v.as_str() != Some("")).cloned().collect(),
    ))
}

fn index(a: FuncArgs) -> R {
    list(&a[0])
        .iter()
        .position(|v| *v == a[1])
        .map(|i| num(i as f64))
        .ok_or_else(|| format!("item {} not found", a[1]))
}

fn setunion(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in a.iter().flat_map(|l| list(l).iter()) {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn setintersection(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in list(&a[0]) {
        if a[1..].iter().all(|other| list(other).contains(v)) && !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn setproduct(a: FuncArgs) -> R {
    let mut rows: Vec<Vec<Value>> = vec![Vec::new()];
    for set in a.iter() {
        let mut next = Vec::new();
        for row in &rows {
            for v in list(set) {
                let mut r = row.clone();
                r.push(v.clone());
                next.push(r);
            }
        }
        rows = next;
        if rows.len() > 10_000 {
            return Err("setproduct would produce more than 10000 elements".into());
        }
    }
    if a.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    Ok(Value::Array(rows.into_iter().map(Value::Array).collect()))
}

fn chunklist(a: FuncArgs) -> R {
    let size = int(&a[1], "chunk size")?;
    let items = list(&a[0]);
    if size < 0 {
        return Err("chunk size must not be negative".into());
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(items.to_vec())]));
    }
    Ok(Value::Array(items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect()))
}

fn base64encode(a: FuncArgs) -> R {
    Ok(base64::engine::general_purpose::STANDARD.encode(s(&a[0])).into())
}

fn base64decode(a: FuncArgs) -> R {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s(&a[0]))
        .map_err(|e| format!("invalid base64: {e}"))?;
    String::from_utf8(bytes).map(Value::from).map_err(|_| "decoded bytes are not UTF-8".into())
}

/// An HCL value as JSON.
pub(crate) fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(x)) => {
                serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
            }
            _ => serde_json::Value::Null,
        },
        Value::String(s) => s.clone().into(),
        Value::Array(items) => items.iter().map(value_to_json).collect(),
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect(),
    }
}

/// JSON as an HCL value.
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Number(i.into()),
            None => num(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect())
        }
    }
}

fn jsonencode(a: FuncArgs) -> R {
    Ok(value_to_json(&a[0]).to_string().into())
}

fn jsondecode(a: FuncArgs) -> R {
    let v: serde_json::Value =
        serde_json::from_str(s(&a[0])).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(json_to_value(&v))
}

fn urlencode(a: FuncArgs) -> R {
    let mut out = String::new();
    for b in s(&a[0]).bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    Ok(out.into())
}

/// RFC 4180 CSV: the first row names the columns; quoted fields may hold commas, quotes and newlines.
fn csvdecode(a: FuncArgs) -> R {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = s(&a[0]).chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => in_quotes = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    let Some((header, body)) = rows.split_first() else {
        return Err("missing header line".into());
    };
    let mut out = Vec::new();
    for (i, r) in body.iter().enumerate() {
        if r.len() != header.len() {
            return Err(format!(
                "line {}: expected {} fields, got {}",
                i + 2,
                header.len(),
                r.len()
            ));
        }
        out.push(Value::Object(
            header.iter().cloned().zip(r.iter().cloned().map(Value::from)).collect(),
        ));
    }
    Ok(Value::Array(out))
}

fn identity(a: FuncArgs) -> R {
    Ok(a[0].clone())
}

fn tostring(a: FuncArgs) -> R {
    match &a[0] {
        Value::Null => Ok(Value::Null),
        v => primitive_string(v).map(Value::from).ok_or(format!("cannot convert {v} to a string")),
    }
}

fn tonumber(a: FuncArgs) -> R {
    match &a[0] {
        Value::Number(_) | Value::Null => Ok(a[0].clone()),
        Value::String(text) => text
            .trim()
            .parse::<f64>()
            .map(num)
            .map_err(|_| format!("cannot convert {text:?} to a number")),
        v => Err(format!("cannot convert {v} to a number")),
    }
}

fn tobool(a: FuncArgs) -> R {
    match &a[0] {
        Value::Bool(_) | Value::Null => Ok(a[0].clone()),
        Value::String(t) if t == "true" => Ok(true.into()),
        Value::String(t) if t == "false" => Ok(false.into()),
        v => Err(format!("cannot convert {v} to a bool")),
    }
}

fn abs(a: FuncArgs) -> R {
    Ok(num(f(&a[0]).abs()))
}

fn ceil(a: FuncArgs) -> R {
    Ok(num(f(&a[0]).ceil()))
}

fn floor(a: FuncArgs) -> R {
    Ok(num(f(&a[0]).floor()))
}

fn log(a: FuncArgs) -> R {
    Ok(num(f(&a[0]).ln() / f(&a[1]).ln()))
}

fn max(a: FuncArgs) -> R {
    Ok(num(a.iter().map(f).fold(f64::NEG_INFINITY, f64::max)))
}

fn min(a: FuncArgs) -> R {
    Ok(num(a.iter().map(f).fold(f64::INFINITY, f64::min)))
}

fn pow(a: FuncArgs) -> R {
    Ok(num(f(&a[0]).powf(f(&a[1]))))
}

fn signum(a: FuncArgs) -> R {
    let x = f(&a[0]);
    Ok(num(if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }))
}

fn parseint(a: FuncArgs) -> R {
    let text = primitive_string(&a[0]).ok_or("parseint needs a string")?;
    let base = int(&a[1], "base")?;
    if !(2..=62).contains(&base) {
        return Err(format!("base must be between 2 and 62, got {base}"));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    if digits.is_empty() {
        return Err(format!("cannot parse {text:?} as a base {base} integer"));
    }
    let mut value: i64 = 0;
    for c in digits.chars() {
        let d = match c {
            '0'..='9' => c as i64 - '0' as i64,
            'a'..='z' => c as i64 - 'a' as i64 + 10,
            'A'..='Z' if base <= 36 => c as i64 - 'A' as i64 + 10,
            'A'..='Z' => c as i64 - 'A' as i64 + 36,
            _ => base,
        };
        if d >= base {
            return Err(format!("cannot parse {text:?} as a base {base} integer"));
        }
        value = value
            .checked_mul(base)
            .and_then(|v| v.checked_add(d))
            .ok_or(format!("{text:?} is too large"))?;
    }
    Ok(num(if negative { -value } else { value } as f64))
}

fn file(a: FuncArgs) -> R {
    std::fs::read_to_string(s(&a[0]))
        .map(Value::from)
        .map_err(|e| format!("cannot read {:?}: {e}", s(&a[0])))
}

fn filebase64(a: FuncArgs) -> R {
    std::fs::read(s(&a[0]))
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes).into())
        .map_err(|e| format!("cannot read {:?}: {e}", s(&a[0])))
}

fn abspath(a: FuncArgs) -> R {
    std::path::absolute(s(&a[0]))
        .map(|p| p.to_string_lossy().into_owned().into())
        .map_err(|e| format!("cannot make {:?} absolute: {e}", s(&a[0])))
}

/// `~` or `~/...` becomes the home directory, as Terraform's pathexpand does.
fn pathexpand(a: FuncArgs) -> R {
    let path = s(&a[0]);
    let rest = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => return Ok(path.into()),
    };
    let home = std::env::var("HOME").map_err(|_| "HOME is not set".to_string())?;
    Ok(format!("{home}{rest}").into())
}

fn fileexists(a: FuncArgs) -> R {
    Ok(std::path::Path::new(s(&a[0])).is_file().into())
}

fn basename(a: FuncArgs) -> R {
    let p = std::path::Path::new(s(&a[0]));
    Ok(p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().into())
}

fn dirname(a: FuncArgs) -> R {
    let p = std::path::Path::new(s(&a[0]));
    let d = p.parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(if d.is_empty() { ".".to_string() } else { d }.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Result<String, String> {
        let mut ctx = Context::new();
        declare(&mut ctx, false);
        let expr: hcl::Expression =
            hcl::edit::parser::parse_expr(src).map_err(|e| e.to_string())?.into();
        expr.evaluate(&ctx).map(|v| value_to_json(&v).to_string()).map_err(|e| e.kind().to_string())
    }

    #[test]
    fn functions_table() {
        let cases: &[(&str, &str)] = &[
            (r#"upper("abc")"#, r#""ABC""#),
            (r#"lower("AbC")"#, r#""abc""#),
            (
                r#"format("%s-%03d-%.2f-%t-%q-%5s|%-3s|", "a", 7, 3.14159, true, "q", "r", "l")"#,
                r#""a-007-3.14-true-\"q\"-    r|l  |""#,
            ),
            (r#"format("100%%")"#, r#""100%""#),
            (r#"formatlist("%s=%s", ["a", "b"], "x")"#, r#"["a=x","b=x"]"#),
            (r#"join(",", ["a", "b"], ["c"])"#, r#""a,b,c""#),
            (r#"split(",", "a,b,,c")"#, r#"["a","b","","c"]"#),
            (r#"replace("a-b-c", "-", "+")"#, r#""a+b+c""#),
            (r#"replace("a1b22", "/[0-9]+/", "_")"#, r#""a_b_""#),
            (r#"regex_replace("v1.2.3", "[.]", "_")"#, r#""v1_2_3""#),
            (r#"trim("?!hello?!", "!?")"#, r#""hello""#),
            (r#"trimspace("  x \n")"#, r#""x""#),
            (r#"trimprefix("nomad-job", "nomad-")"#, r#""job""#),
            (r#"trimsuffix("job.nomad", ".nomad")"#, r#""job""#),
            (r#"substr("hello world", 1, 4)"#, r#""ello""#),
            (r#"substr("hello", -3, -1)"#, r#""llo""#),
            (r#"strlen("héllo")"#, "5"),
            (r#"strrev("abc")"#, r#""cba""#),
            (r#"title("hello big-world")"#, r#""Hello Big-World""#),
            (r#"chomp("x\n\n")"#, r#""x""#),
            (r#"indent(2, "a\nb\n")"#, r#""a\n  b\n  ""#),
            (r#"concat(["a"], [], ["b", "c"])"#, r#"["a","b","c"]"#),
            (r#"contains(["a", "b"], "b")"#, "true"),
            (r#"distinct(["a", "b", "a"])"#, r#"["a","b"]"#),
            (r#"element(["a", "b"], 3)"#, r#""b""#),
            (r#"flatten([["a"], [["b"]], "c"])"#, r#"["a","b","c"]"#),
            (r#"keys({b = 1, a = 2})"#, r#"["a","b"]"#),
            (r#"values({b = 1, a = 2})"#, "[2,1]"),
            (r#"length("abc")"#, "3"),
            (r#"length({a = 1})"#, "1"),
            (r#"lookup({a = "x"}, "a")"#, r#""x""#),
            (r#"lookup({a = "x"}, "b", "d")"#, r#""d""#),
            (r#"merge({a = 1, b = 2}, {b = 3})"#, r#"{"a":1,"b":3}"#),
            ("range(3)", "[0,1,2]"),
            ("range(1, 7, 2)", "[1,3,5]"),
            ("range(3, 0)", "[3,2,1]"),
            (r#"reverse([1, 2, 3])"#, "[3,2,1]"),
            (r#"slice(["a", "b", "c", "d"], 1, 3)"#, r#"["b","c"]"#),
            (r#"sort(["b", "c", "a"])"#, r#"["a","b","c"]"#),
            (r#"zipmap(["a", "b"], [1, 2])"#, r#"{"a":1,"b":2}"#),
            (r#"coalesce("", "b", "c")"#, r#""b""#),
            (r#"coalescelist([], ["x"])"#, r#"["x"]"#),
            (r#"compact(["a", "", "b"])"#, r#"["a","b"]"#),
            (r#"index(["a", "b"], "b")"#, "1"),
            (r#"setunion(["a", "b"], ["b", "c"])"#, r#"["a","b","c"]"#),
            (r#"setintersection(["a", "b", "c"], ["b", "c", "d"], ["c", "b"])"#, r#"["b","c"]"#),
            (r#"setproduct(["a", "b"], [1, 2])"#, r#"[["a",1],["a",2],["b",1],["b",2]]"#),
            (r#"chunklist(["a", "b", "c"], 2)"#, r#"[["a","b"],["c"]]"#),
            (r#"base64encode("hello")"#, r#""aGVsbG8=""#),
            (r#"base64decode("aGVsbG8=")"#, r#""hello""#),
            (r#"jsonencode({a = [1, true, null]})"#, r#""{\"a\":[1,true,null]}""#),
            (r#"jsondecode("{\"a\": [1, 2.5]}")"#, r#"{"a":[1,2.5]}"#),
            (r#"urlencode("a b&c/é")"#, r#""a+b%26c%2F%C3%A9""#),
            (r#"csvdecode("a,b\n1,\"x,y\"\n")"#, r#"[{"a":"1","b":"x,y"}]"#),
            (r#"tonumber("42")"#, "42"),
            (r#"tostring(5)"#, r#""5""#),
            ("abs(-3)", "3"),
            ("ceil(1.2)", "2"),
            ("floor(1.8)", "1"),
            ("log(8, 2)", "3"),
            ("max(1, 9, 3)", "9"),
            ("min(4, -2)", "-2"),
            ("pow(2, 10)", "1024"),
            ("signum(-7)", "-1"),
            (r#"parseint("ff", 16)"#, "255"),
            (r#"parseint("-101", 2)"#, "-5"),
        ];
        for (src, want) in cases {
            assert_eq!(eval(src).as_deref(), Ok(*want), "{src}");
        }
    }

    #[test]
    fn function_errors_table() {
        let cases: &[(&str, &str)] = &[
            (r#"format("%s %s", "a")"#, "not enough arguments"),
            (r#"format("%d", "a")"#, "needs a number"),
            (r#"element([], 0)"#, "empty list"),
            (r#"lookup({}, "k")"#, "no key"),
            (r#"parseint("12", 99)"#, "base must be"),
            (r#"parseint("z", 10)"#, "cannot parse"),
            (r#"base64decode("!!")"#, "invalid base64"),
            (r#"zipmap(["a"], [])"#, "1 keys but 0 values"),
            (r#"regex_replace("a", "(", "")"#, "regex"),
            (r#"csvdecode("a,b\n1\n")"#, "expected 2 fields"),
            (r#"file("/etc/hostname")"#, "undefined function"),
        ];
        for (src, want) in cases {
            let err = eval(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err}");
        }
    }
}
