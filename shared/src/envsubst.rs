//! `${VAR}` substitution in stack.yml as faas-cli does it (drone/envsubst v1.0.3, run on the whole text before the
//! YAML parse), but from an **empty** environment: a build must not see the platform's own variables or secrets, so
//! every variable is unset. `${X}` is empty, `${X:-d}`, `${X:=d}`, `${X=d}` (and `:?`, `:+`, which v1.0.3 treats
//! the same) give `d`, `$$` is `$`, and, as in v1.0.3, `\\` and `\/` outside `${…}` lose their backslash.
//! `$VAR` without braces is left as it is. The scanner mirrors drone's, so the same texts fail with the same errors.

/// Why a text could not be substituted; drone/envsubst's messages, plus the line where the parse stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at line {line}, column {column}")]
pub struct EnvsubstError {
    pub kind: EnvsubstErrorKind,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvsubstErrorKind {
    #[error("bad substitution")]
    BadSubstitution,
    #[error("missing closing brace")]
    MissingClosingBrace,
    #[error("unable to parse variable name")]
    VariableName,
    #[error("unable to parse substitution within function")]
    FuncSubstitution,
    #[error("unable to parse default function")]
    DefaultFunction,
    /// Ours: `${a:-${b:-${c…` nests by recursion, so a hostile file could exhaust the stack.
    #[error("substitutions nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// The deepest `${…}` inside `${…}` accepted; real stacks nest one or two.
const MAX_DEPTH: usize = 32;

/// Substitutes `text` with every variable unset.
pub fn substitute(text: &str) -> Result<String, EnvsubstError> {
    let mut scanner = Scanner::new(text);
    let nodes = scanner.parse_any().map_err(|kind| {
        let (line, column) = scanner.place();
        EnvsubstError { kind, line, column }
    })?;
    let mut out = String::with_capacity(text.len());
    for node in &nodes {
        out.push_str(&node.eval());
    }
    Ok(out)
}

type Kind = EnvsubstErrorKind;

enum Node {
    Text(String),
    /// A `${…}`: the function's name (`:-`, `#`, `//`, … or empty) and its evaluated-later arguments.
    Func {
        name: String,
        args: Vec<Node>,
    },
}

impl Node {
    /// The node's text, the variable's value being empty (the environment is empty).
    fn eval(&self) -> String {
        let (name, args) = match self {
            Node::Text(text) => return text.clone(),
            Node::Func { name, args } => (name.as_str(), args.iter().map(Node::eval).collect::<Vec<_>>()),
        };
        // Go's strings.Replace("", "", new, n) gives `new`: the only way a replacement changes an empty value.
        let replaced = |args: &[String]| match args {
            [pattern, with] if pattern.is_empty() => with.clone(),
            _ => String::new(),
        };
        match name {
            "#" if args.is_empty() => "0".to_owned(),
            "," | ",," | "^" | "^^" | "#" | "##" | "%" | "%%" | ":" => String::new(),
            "/" | "//" | "/#" | "/%" => replaced(&args),
            _ => args.concat(),
        }
    }
}

const IDENT: u8 = 1;
const LBRACK: u8 = 2;
const RBRACK: u8 = 4;
const ESCAPE: u8 = 8;

/// drone's `acceptFunc`s: which characters a token may hold, given its position `i` (1 for the first).
#[derive(Clone, Copy)]
enum Accept {
    Rune,
    Ident,
    Colon,
    OneHash,
    NotClosing,
    HashFunc,
    PercentFunc,
    DefaultFunc,
    ReplaceFunc,
    OneEqual,
    OneColon,
    RejectColonClose,
    Slash,
    NotSlash,
    CasingFunc,
}

impl Accept {
    fn accepts(self, r: char, i: usize) -> bool {
        match self {
            Accept::Rune => true,
            Accept::Ident => r.is_alphanumeric() || r == '_',
            Accept::Colon => r == ':',
            Accept::OneHash => r == '#' && i == 1,
            Accept::NotClosing => r != '}',
            Accept::HashFunc => r == '#' && i < 3,
            Accept::PercentFunc => r == '%' && i < 3,
            Accept::DefaultFunc => (i == 1 && r == ':') || (i == 2 && matches!(r, '=' | '-' | '?' | '+')),
            Accept::ReplaceFunc => (i == 1 && r == '/') || (i == 2 && matches!(r, '/' | '#' | '%')),
            Accept::OneEqual => i == 1 && r == '=',
            Accept::OneColon => i == 1 && r == ':',
            Accept::RejectColonClose => r != ':' && r != '}',
            Accept::Slash => r == '/',
            Accept::NotSlash => r != '/',
            Accept::CasingFunc => matches!(r, ',' | '^') && i < 3,
        }
    }
}

#[derive(PartialEq, Eq)]
enum Token {
    Illegal,
    Eof,
    Ident,
    Lbrack,
    Rbrack,
}

/// drone's scanner over characters. Where drone cuts an escaping character out of its buffer, this one marks it
/// `removed` and steps over the escaped one, which keeps the scan linear.
struct Scanner {
    buf: Vec<char>,
    removed: Vec<bool>,
    pos: usize,
    start: usize,
    width: usize,
    mode: u8,
    accept: Accept,
}

impl Scanner {
    fn new(text: &str) -> Self {
        let buf: Vec<char> = text.chars().collect();
        let removed = vec![false; buf.len()];
        Self { buf, removed, pos: 0, start: 0, width: 0, mode: 0, accept: Accept::Rune }
    }

    /// The line and column (1-based) where the scan stopped.
    fn place(&self) -> (usize, usize) {
        let before = &self.buf[..self.pos.min(self.buf.len())];
        let line_start = before.iter().rposition(|c| *c == '\n').map_or(0, |i| i + 1);
        (1 + before.iter().filter(|c| **c == '\n').count(), 1 + before.len() - line_start)
    }

    fn read(&mut self) -> Option<char> {
        let r = self.buf.get(self.pos).copied();
        self.width = usize::from(r.is_some());
        self.pos += self.width;
        r
    }

    fn unread(&mut self) {
        self.pos -= self.width;
    }

    fn peek(&mut self) -> Option<char> {
        let r = self.read();
        self.unread();
        r
    }

    fn skip(&mut self) {
        self.removed[self.pos - 1] = true;
        self.pos += 1;
    }

    fn string(&self) -> String {
        (self.start..self.pos.min(self.buf.len())).filter(|i| !self.removed[*i]).map(|i| self.buf[i]).collect()
    }

    fn set(&mut self, accept: Accept, mode: u8) {
        self.accept = accept;
        self.mode = mode;
    }

    fn scan(&mut self) -> Token {
        self.start = self.pos;
        let Some(r) = self.read() else { return Token::Eof };
        if self.scan_lbrack(r) {
            Token::Lbrack
        } else if self.mode & RBRACK != 0 && r == '}' {
            Token::Rbrack
        } else if self.scan_ident(r) {
            Token::Ident
        } else {
            Token::Illegal
        }
    }

    fn scan_ident(&mut self, r: char) -> bool {
        if self.mode & IDENT == 0 {
            return false;
        }
        if self.scan_escaped(r) {
            self.skip();
        } else if !self.accept.accepts(r, self.pos - self.start) {
            return false;
        }
        loop {
            let Some(r) = self.read() else {
                self.unread();
                break;
            };
            if self.scan_lbrack(r) {
                self.unread();
                self.unread();
                break;
            }
            if self.scan_escaped(r) {
                self.skip();
                continue;
            }
            if !self.accept.accepts(r, self.pos - self.start) {
                self.unread();
                break;
            }
        }
        true
    }

    fn scan_lbrack(&mut self, r: char) -> bool {
        if self.mode & LBRACK == 0 || r != '$' {
            return false;
        }
        if self.read() == Some('{') {
            return true;
        }
        self.unread();
        false
    }

    fn scan_escaped(&mut self, r: char) -> bool {
        if self.mode & ESCAPE == 0 {
            return false;
        }
        match r {
            '$' => self.peek() == Some('$'),
            '\\' => matches!(self.peek(), Some('/' | '\\')),
            _ => false,
        }
    }

    /// The top level, as a loop (drone recurses once per token, which a large file would turn into a deep stack).
    fn parse_any(&mut self) -> Result<Vec<Node>, Kind> {
        let mut nodes = Vec::new();
        loop {
            self.set(Accept::Rune, IDENT | LBRACK | ESCAPE);
            match self.scan() {
                Token::Ident => nodes.push(Node::Text(self.string())),
                Token::Eof => return Ok(nodes),
                Token::Lbrack => nodes.push(self.parse_func(1)?),
                _ => return Err(Kind::BadSubstitution),
            }
        }
    }

    fn parse_func(&mut self, depth: usize) -> Result<Node, Kind> {
        if depth > MAX_DEPTH {
            return Err(Kind::TooDeep);
        }
        if self.peek() == Some('#') {
            return self.parse_len_func();
        }
        self.set(Accept::Ident, IDENT);
        if self.scan() != Token::Ident {
            return Err(Kind::VariableName);
        }
        match self.peek() {
            Some(':') => return self.parse_default_or_substr(depth),
            Some('=') => return self.parse_default_func(depth),
            Some(',' | '^') => return self.parse_casing_func(),
            Some('/') => return self.parse_replace_func(depth),
            Some('#') => return self.parse_remove_func(Accept::HashFunc, depth),
            Some('%') => return self.parse_remove_func(Accept::PercentFunc, depth),
            _ => {}
        }
        self.set(Accept::Ident, RBRACK);
        match self.scan() {
            Token::Rbrack => Ok(Node::Func { name: String::new(), args: Vec::new() }),
            _ => Err(Kind::MissingClosingBrace),
        }
    }

    fn parse_param(&mut self, accept: Accept, mode: u8, depth: usize) -> Result<Node, Kind> {
        self.set(accept, mode | LBRACK);
        match self.scan() {
            Token::Lbrack => self.parse_func(depth + 1),
            Token::Ident | Token::Rbrack => Ok(Node::Text(self.string())),
            _ => Err(Kind::FuncSubstitution),
        }
    }

    /// Scans a function's name (`:-`, `//`, …) with `accept`, or fails with `error`.
    fn func_name(&mut self, accept: Accept, error: Kind) -> Result<String, Kind> {
        self.set(accept, IDENT);
        if self.scan() == Token::Ident {
            Ok(self.string())
        } else {
            Err(error)
        }
    }

    fn parse_default_or_substr(&mut self, depth: usize) -> Result<Node, Kind> {
        self.read();
        let r = self.peek();
        self.unread();
        match r {
            Some('=' | '-' | '?' | '+') => self.parse_default_func(depth),
            _ => self.parse_substr_func(depth),
        }
    }

    fn parse_substr_func(&mut self, depth: usize) -> Result<Node, Kind> {
        let name = self.func_name(Accept::OneColon, Kind::BadSubstitution)?;
        let mut args = vec![self.parse_param(Accept::RejectColonClose, IDENT, depth)?];
        self.set(Accept::Colon, IDENT | RBRACK);
        match self.scan() {
            Token::Rbrack => return Ok(Node::Func { name, args }),
            Token::Ident => {}
            _ => return Err(Kind::BadSubstitution),
        }
        args.push(self.parse_param(Accept::NotClosing, IDENT, depth)?);
        self.consume_rbrack()?;
        Ok(Node::Func { name, args })
    }

    fn parse_remove_func(&mut self, accept: Accept, depth: usize) -> Result<Node, Kind> {
        let name = self.func_name(accept, Kind::BadSubstitution)?;
        let args = vec![self.parse_param(Accept::NotClosing, IDENT, depth)?];
        self.consume_rbrack()?;
        Ok(Node::Func { name, args })
    }

    fn parse_replace_func(&mut self, depth: usize) -> Result<Node, Kind> {
        let name = self.func_name(Accept::ReplaceFunc, Kind::BadSubstitution)?;
        let mut args = vec![self.parse_param(Accept::NotSlash, IDENT | ESCAPE, depth)?];
        self.func_name(Accept::Slash, Kind::BadSubstitution)?;
        if self.peek() != Some('}') {
            args.push(self.parse_param(Accept::NotClosing, IDENT | ESCAPE, depth)?);
        }
        self.consume_rbrack()?;
        Ok(Node::Func { name, args })
    }

    fn parse_default_func(&mut self, depth: usize) -> Result<Node, Kind> {
        let accept = if self.peek() == Some('=') { Accept::OneEqual } else { Accept::DefaultFunc };
        let name = self.func_name(accept, Kind::DefaultFunction)?;
        let mut args = Vec::new();
        while self.peek() != Some('}') {
            args.push(self.parse_param(Accept::NotClosing, IDENT, depth)?);
        }
        self.consume_rbrack()?;
        Ok(Node::Func { name, args })
    }

    fn parse_casing_func(&mut self) -> Result<Node, Kind> {
        let name = self.func_name(Accept::CasingFunc, Kind::BadSubstitution)?;
        self.consume_rbrack()?;
        Ok(Node::Func { name, args: Vec::new() })
    }

    fn parse_len_func(&mut self) -> Result<Node, Kind> {
        let name = self.func_name(Accept::OneHash, Kind::BadSubstitution)?;
        self.func_name(Accept::Ident, Kind::BadSubstitution)?;
        self.consume_rbrack()?;
        Ok(Node::Func { name, args: Vec::new() })
    }

    fn consume_rbrack(&mut self) -> Result<(), Kind> {
        self.mode = RBRACK;
        if self.scan() == Token::Rbrack {
            Ok(())
        } else {
            Err(Kind::BadSubstitution)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str) -> String {
        substitute(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_variable_is_unset() {
        assert_eq!(sub("image: ${REGISTRY}/fn"), "image: /fn");
        assert_eq!(sub("a: ${X:-d}"), "a: d");
        assert_eq!(sub("a: ${X:=d} ${X=e} ${X:?f} ${X:+g}"), "a: d e f g");
        assert_eq!(sub("a: ${X:-pre-${Y:-in}-post}"), "a: pre-in-post");
        assert_eq!(sub("${#X} ${X^^} ${X,} ${X:1:2} ${X#a} ${X%%b} ${X/a/b}"), "0      ");
        // PATH is set in this very process: it must not leak.
        assert_eq!(sub("${PATH}${HOME:-none}"), "none");
    }

    #[test]
    fn escapes_and_plain_dollars_follow_v1_0_3() {
        assert_eq!(sub("$${X} $$Y $X a$b"), "${X} $Y $X a$b");
        assert_eq!(sub(r#"p: "a\\b\/c\n""#), r#"p: "a\b/c\n""#);
        assert_eq!(sub("price: 5$"), "price: 5$");
    }

    #[test]
    fn malformed_substitutions_fail_as_drone_does() {
        let kind = |t: &str| substitute(t).unwrap_err().kind;
        assert_eq!(kind("${}"), Kind::VariableName);
        assert_eq!(kind("a\n${X"), Kind::MissingClosingBrace);
        assert_eq!(kind("${X-d}"), Kind::MissingClosingBrace);
        assert_eq!(kind("${X+d}"), Kind::MissingClosingBrace);
        let err = substitute("a\nb\n ${X").unwrap_err();
        assert_eq!((err.line, err.column), (3, 5), "{err}");
        let deep = "${a:-".repeat(10_000);
        assert_eq!(kind(&deep), Kind::TooDeep);
    }
}
