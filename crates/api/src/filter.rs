//! The `filter` query parameter: the subset of HashiCorp's go-bexpr language that Nomad clients
//! send, evaluated against an object's API JSON.
//!
//! Supported: selectors (`Tags`, `Meta.version`, `Meta["a.b"]`), `==`, `!=`, `contains`,
//! `not contains`, `in`, `not in`, `is empty`, `is not empty`, `matches`, `not matches`, `and`,
//! `or`, `not` and parentheses; values are double-quoted or backtick strings, numbers and booleans.
//! Matching is against the JSON that the endpoint returns (PascalCase field names), so a filter
//! means the same thing here as in Nomad. This module does not know which endpoint it serves.

use regex::Regex;
use serde_json::Value;
use std::fmt;

/// A parsed filter expression, ready to be evaluated against many objects.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Expr,
}

/// Why a filter could not be parsed; `position` is a 0-based character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at character {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match { selector: Vec<String>, op: MatchOp, negate: bool },
}

#[derive(Debug, Clone)]
enum MatchOp {
    Equal(Literal),
    Contains(Literal),
    IsEmpty,
    Matches(Regex),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Number(f64, String),
    Bool(bool),
}

impl Literal {
    fn text(&self) -> String {
        match self {
            Literal::Str(s) => s.clone(),
            Literal::Number(_, raw) => raw.clone(),
            Literal::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(f64, String),
    Op(&'static str),
    LParen,
    RParen,
    Dot,
    LBracket,
    RBracket,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s}"),
            Token::Str(s) => write!(f, "{s:?}"),
            Token::Number(_, raw) => write!(f, "{raw}"),
            Token::Op(op) => write!(f, "{op}"),
            Token::LParen => write!(f, "("),
            Token::RParen => write!(f, ")"),
            Token::Dot => write!(f, "."),
            Token::LBracket => write!(f, "["),
            Token::RBracket => write!(f, "]"),
            Token::End => write!(f, "end of filter"),
        }
    }
}

/// The longest filter accepted, in bytes; request parameters are untrusted.
pub const MAX_FILTER_LEN: usize = 4096;

impl Filter {
    /// Parses a filter expression.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(FilterError {
                position: MAX_FILTER_LEN,
                message: format!("filter is longer than {MAX_FILTER_LEN} bytes"),
            });
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, pos: 0, depth: 0 };
        let root = parser.or_expr()?;
        let (token, position) = parser.peek_with_pos();
        if *token != Token::End {
            return Err(FilterError { position, message: format!("unexpected {token}") });
        }
        Ok(Filter { root })
    }

    /// True when `value` (an object's API JSON) satisfies the filter.
    pub fn matches(&self, value: &Value) -> bool {
        eval(&self.root, value)
    }
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => tokens.push((Token::LParen, start)),
            ')' => tokens.push((Token::RParen, start)),
            '.' => tokens.push((Token::Dot, start)),
            '[' => tokens.push((Token::LBracket, start)),
            ']' => tokens.push((Token::RBracket, start)),
            '=' | '!' => {
                if chars.get(i + 1) != Some(&'=') {
                    return Err(FilterError {
                        position: start,
                        message: format!("expected \"{c}=\"; use == or !="),
                    });
                }
                tokens.push((Token::Op(if c == '=' { "==" } else { "!=" }), start));
                i += 1;
            }
            '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterError {
                                position: start,
                                message: "unterminated string".into(),
                            })
                        }
                        Some(&ch) if ch == quote => break,
                        Some('\\') if quote == '"' => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(&other) => s.push(other),
                                None => {
                                    return Err(FilterError {
                                        position: start,
                                        message: "unterminated string".into(),
                                    })
                                }
                            }
                        }
                        Some(&ch) => s.push(ch),
                    }
                    i += 1;
                }
                tokens.push((Token::Str(s), start));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let mut end = i + 1;
                while end < chars.len() && (chars[end].is_ascii_digit() || chars[end] == '.') {
                    end += 1;
                }
                let raw: String = chars[i..end].iter().collect();
                let n = raw.parse::<f64>().map_err(|_| FilterError {
                    position: start,
                    message: format!("bad number {raw:?}"),
                })?;
                tokens.push((Token::Number(n, raw), start));
                i = end - 1;
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut end = i + 1;
                while end < chars.len()
                    && (chars[end].is_alphanumeric() || chars[end] == '_' || chars[end] == '-')
                {
                    end += 1;
                }
                tokens.push((Token::Ident(chars[i..end].iter().collect()), start));
                i = end - 1;
            }
            other => {
                return Err(FilterError {
                    position: start,
                    message: format!("unexpected character {other:?}"),
                })
            }
        }
        i += 1;
    }
    tokens.push((Token::End, chars.len()));
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    depth: usize,
}

/// Nesting deeper than this is refused so a hostile filter cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].0
    }

    fn peek_with_pos(&self) -> (&Token, usize) {
        let (t, p) = &self.tokens[self.pos];
        (t, *p)
    }

    fn peek_keyword(&self, offset: usize, word: &str) -> bool {
        matches!(self.tokens.get(self.pos + offset), Some((Token::Ident(s), _)) if s == word)
    }

    fn next(&mut self) -> (Token, usize) {
        let t = self.tokens[self.pos].clone();
        if t.0 != Token::End {
            self.pos += 1;
        }
        t
    }

    /// Steps back over a token just taken by `next`, so errors point at it. `End` is never
    /// consumed, so there is nothing to step back over.
    fn unread(&mut self, token: &Token) {
        if *token != Token::End {
            self.pos -= 1;
        }
    }

    fn error<T>(&self, message: String) -> Result<T, FilterError> {
        Err(FilterError { position: self.tokens[self.pos].1, message })
    }

    fn or_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and_expr()?;
        while self.peek_keyword(0, "or") {
            self.next();
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.not_expr()?;
        while self.peek_keyword(0, "and") {
            self.next();
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error(format!("expression nests deeper than {MAX_DEPTH} levels"));
        }
        let expr = if self.peek_keyword(0, "not") {
            self.next();
            Expr::Not(Box::new(self.not_expr()?))
        } else if *self.peek() == Token::LParen {
            self.next();
            let inner = self.or_expr()?;
            if *self.peek() != Token::RParen {
                return self.error(format!("expected \")\", found {}", self.peek()));
            }
            self.next();
            inner
        } else {
            self.match_expr()?
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn match_expr(&mut self) -> Result<Expr, FilterError> {
        // `"value" in Selector` and `"value" not in Selector` put the value first.
        if matches!(self.peek(), Token::Str(_) | Token::Number(..)) {
            let value = self.literal()?;
            let negate = if self.peek_keyword(0, "not") && self.peek_keyword(1, "in") {
                self.next();
                self.next();
                true
            } else if self.peek_keyword(0, "in") {
                self.next();
                false
            } else {
                return self.error(format!("expected \"in\" or \"not in\", found {}", self.peek()));
            };
            let selector = self.selector()?;
            return Ok(Expr::Match { selector, op: MatchOp::Contains(value), negate });
        }
        let selector = self.selector()?;
        let (token, _) = self.next();
        let (op, negate) = match token {
            Token::Op("==") => (MatchOp::Equal(self.literal()?), false),
            Token::Op("!=") => (MatchOp::Equal(self.literal()?), true),
            Token::Ident(word) if word == "contains" => (MatchOp::Contains(self.literal()?), false),
            Token::Ident(word) if word == "matches" => (self.regex()?, false),
            Token::Ident(word) if word == "is" => {
                let negate = self.peek_keyword(0, "not");
                if negate {
                    self.next();
                }
                if !self.peek_keyword(0, "empty") {
                    return self.error(format!("expected \"empty\", found {}", self.peek()));
                }
                self.next();
                (MatchOp::IsEmpty, negate)
            }
            Token::Ident(word) if word == "not" => {
                let (next, _) = self.next();
                match next {
                    Token::Ident(w) if w == "contains" => {
                        (MatchOp::Contains(self.literal()?), true)
                    }
                    Token::Ident(w) if w == "matches" => (self.regex()?, true),
                    other => {
                        self.unread(&other);
                        return self
                            .error(format!("expected \"contains\" or \"matches\", found {other}"));
                    }
                }
            }
            other => {
                self.unread(&other);
                return self.error(format!(
                    "expected an operator (==, !=, contains, matches, is empty), found {other}"
                ));
            }
        };
        Ok(Expr::Match { selector, op, negate })
    }

    fn selector(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = Vec::new();
        match self.next() {
            (Token::Ident(first), _) => path.push(first),
            (other, _) => {
                self.unread(&other);
                return self.error(format!("expected a field name, found {other}"));
            }
        }
        loop {
            match self.peek() {
                Token::Dot => {
                    self.next();
                    match self.next() {
                        (Token::Ident(name), _) => path.push(name),
                        (other, _) => {
                            self.unread(&other);
                            return self.error(format!(
                                "expected a field name after \".\", found {other}"
                            ));
                        }
                    }
                }
                Token::LBracket => {
                    self.next();
                    let key = match self.next() {
                        (Token::Str(s), _) => s,
                        (other, _) => {
                            self.unread(&other);
                            return self.error(format!("expected a quoted key, found {other}"));
                        }
                    };
                    if *self.peek() != Token::RBracket {
                        return self.error(format!("expected \"]\", found {}", self.peek()));
                    }
                    self.next();
                    path.push(key);
                }
                _ => return Ok(path),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        match self.next() {
            (Token::Str(s), _) => Ok(Literal::Str(s)),
            (Token::Number(n, raw), _) => Ok(Literal::Number(n, raw)),
            (Token::Ident(word), _) if word == "true" => Ok(Literal::Bool(true)),
            (Token::Ident(word), _) if word == "false" => Ok(Literal::Bool(false)),
            (other, _) => {
                self.unread(&other);
                self.error(format!(
                    "expected a value (a quoted string, number or boolean), found {other}"
                ))
            }
        }
    }

    fn regex(&mut self) -> Result<MatchOp, FilterError> {
        let position = self.tokens[self.pos].1;
        let pattern = self.literal()?.text();
        Regex::new(&pattern).map(MatchOp::Matches).map_err(|e| FilterError {
            position,
            message: format!("invalid regular expression: {e}"),
        })
    }
}

fn resolve<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(key))
}

fn eval(expr: &Expr, value: &Value) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, value) && eval(b, value),
        Expr::Or(a, b) => eval(a, value) || eval(b, value),
        Expr::Not(e) => !eval(e, value),
        Expr::Match { selector, op, negate } => {
            let field = resolve(value, selector);
            let hit = match op {
                MatchOp::Equal(lit) => field.is_some_and(|f| equals(f, lit)),
                MatchOp::Contains(lit) => field.is_some_and(|f| contains(f, lit)),
                MatchOp::IsEmpty => field.is_none_or(is_empty),
                MatchOp::Matches(re) => {
                    field.and_then(Value::as_str).is_some_and(|s| re.is_match(s))
                }
            };
            hit != *negate
        }
    }
}

fn equals(field: &Value, lit: &Literal) -> bool {
    match (field, lit) {
        (Value::String(s), lit) => *s == lit.text(),
        (Value::Number(n), Literal::Number(x, _)) => n.as_f64() == Some(*x),
        (Value::Number(n), Literal::Str(s)) => s.parse::<f64>().ok() == n.as_f64(),
        (Value::Bool(b), Literal::Bool(x)) => b == x,
        (Value::Bool(b), Literal::Str(s)) => s.parse::<bool>().ok() == Some(*b),
        _ => false,
    }
}

fn contains(field: &Value, lit: &Literal) -> bool {
    match field {
        Value::Array(items) => items.iter().any(|item| equals(item, lit)),
        Value::Object(map) => map.contains_key(&lit.text()),
        Value::String(s) => s.contains(&lit.text()),
        _ => false,
    }
}

fn is_empty(field: &Value) -> bool {
    match field {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Value {
        json!({
            "ServiceName": "hello-web",
            "Tags": ["nginx", "www", "traefik.enable=true"],
            "Port": 23456,
            "Meta": {"version": "2", "a.b": "c"},
            "Healthy": true,
            "Empty": [],
        })
    }

    #[test]
    fn evaluates_the_subset_clients_send() {
        let cases = [
            (r#"Tags contains "traefik.enable=true""#, true),
            (r#"Tags contains "nope""#, false),
            (r#"Tags not contains "nope""#, true),
            (r#""www" in Tags"#, true),
            (r#""www" not in Tags"#, false),
            (r#"ServiceName == "hello-web""#, true),
            (r#"ServiceName != "hello-web""#, false),
            (r#"Port == 23456"#, true),
            (r#"Port == "23456""#, true),
            (r#"Healthy == true"#, true),
            (r#"Meta.version == "2""#, true),
            (r#"Meta["a.b"] == "c""#, true),
            (r#""version" in Meta"#, true),
            (r#"Meta.missing == "x""#, false),
            (r#"Meta.missing is empty"#, true),
            (r#"Empty is empty and Tags is not empty"#, true),
            (r#"ServiceName matches "^hello-.*$""#, true),
            (r#"ServiceName not matches "^x""#, true),
            (r#"not (Port == 1 or ServiceName == "x") and "nginx" in Tags"#, true),
            (r#"Port == 1 or ServiceName == `hello-web`"#, true),
            (r#"Port == 1 or Port == 2 and Healthy == true"#, false),
        ];
        for (text, want) in cases {
            let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(filter.matches(&service()), want, "{text}");
        }
    }

    #[test]
    fn reports_where_a_filter_is_wrong() {
        let cases = [
            (r#"Tags contains"#, "invalid filter at character 13: expected a value (a quoted string, number or boolean), found end of filter"),
            (r#"Tags = "x""#, "invalid filter at character 5: expected \"==\"; use == or !="),
            (r#"Tags contains "x" garbage"#, "invalid filter at character 18: unexpected garbage"),
            (r#"(Tags contains "x""#, "invalid filter at character 18: expected \")\", found end of filter"),
            (r#"Name matches "(""#, "invalid filter at character 13: invalid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group"),
            (r#"Name == "open"#, "invalid filter at character 8: unterminated string"),
        ];
        for (text, want) in cases {
            let err = Filter::parse(text).unwrap_err();
            assert_eq!(err.to_string(), want, "{text}");
        }
    }

    #[test]
    fn refuses_hostile_nesting_and_length() {
        let deep = format!("{}Port == 1{}", "(".repeat(200), ")".repeat(200));
        assert!(Filter::parse(&deep).unwrap_err().message.contains("nests deeper"));
        let long = format!("Name == \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert!(Filter::parse(&long).is_err());
    }
}
