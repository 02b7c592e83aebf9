//! `stack.yml` in faas-cli's schema: what git-tar builds and what the local stack runs. Unknown keys are ignored,
//! as faas-cli ignores them; errors carry the line and column.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::event::FunctionResources;

/// The largest stack.yml or environment_file read: a stack is a page of text, and a bigger file is either a
/// mistake or an attempt to make git-tar spend its memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The deepest nesting (indentation levels, `- - -` items and `[`/`{` brackets) a file may have. Real stacks nest
/// five or six deep; a file of nested brackets would otherwise cost seconds of CPU in the YAML parser.
pub(crate) const MAX_NESTING: usize = 64;

/// Why a stack file could not be used; every message is one a user can act on. No message quotes a file's text: a
/// file can be made to hold anything (a link to a secret, a token), and these messages become commit statuses, logs
/// and audit events.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("no stack.yml (or stack.yaml) at the repository root")]
    Missing,
    #[error("`{path}` leaves the repository (through `..`, an absolute path or a symbolic link) or points into .git")]
    Escapes { path: String },
    #[error("{file} is not a regular file in the repository")]
    NotAFile { file: String },
    #[error("{file} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { file: String },
    #[error("{file} is nested more than {MAX_NESTING} levels deep at line {line}")]
    TooDeep { file: String, line: usize },
    #[error("{file} is not UTF-8 text")]
    NotText { file: String },
    #[error("{file}: ${{…}} substitution failed: {source}")]
    Envsubst { file: String, source: crate::envsubst::EnvsubstError },
    #[error("{file} is not valid YAML{}: {kind}", location.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
    Yaml { file: String, kind: String, location: Option<(usize, usize)> },
    /// faas-cli's own words.
    #[error("['openfaas'] is the only valid \"provider.name\" for the OpenFaaS CLI, but you gave: {0}")]
    Provider(String),
    #[error("[1.0] are the only valid versions for the stack file - found: {0}")]
    Version(String),
    #[error("stack.yml has no functions")]
    NoFunctions,
    #[error("function `{function}`: {reason}")]
    Function { function: String, reason: String },
    #[error("function `{function}`: environment_file `{path}`: {reason}")]
    EnvironmentFile { function: String, path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A whole stack file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Stack {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub provider: Provider,
    #[serde(default)]
    pub functions: BTreeMap<String, StackFunction>,
    #[serde(default)]
    pub configuration: Option<StackConfiguration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Provider {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// `configuration:`: where templates come from, and files copied into every handler.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StackConfiguration {
    #[serde(default)]
    pub templates: Vec<TemplateSource>,
    #[serde(default)]
    pub copy: Vec<String>,
    /// `previews: true`: the repository asks for its other branches and pull requests to be deployed as previews
    /// (only where the operator's `previews` is on; see docs/previews.md).
    #[serde(default)]
    pub previews: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateSource {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub source: Option<String>,
}

/// One function of the stack.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StackFunction {
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub handler: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// Files whose `environment:` maps are merged, in order, under `environment`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub environment_file: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Option<FunctionResources>,
    #[serde(default)]
    pub requests: Option<FunctionResources>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub build_args: BTreeMap<String, String>,
    #[serde(default)]
    pub build_options: Vec<String>,
    #[serde(default)]
    pub skip_build: bool,
    /// Extra paths copied into the handler's build folder.
    #[serde(default)]
    pub copy: Vec<String>,
    #[serde(default)]
    pub constraints: Vec<String>,
    /// `None` when stack.yml says nothing, so the operator's default applies.
    #[serde(default)]
    pub readonly_root_filesystem: Option<bool>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub fprocess: Option<String>,
}

/// YAML scalars (`true`, `3`, `"x"`) as the strings OpenFaaS passes on.
fn scalar_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    // Asked for a string, the YAML deserializer hands over a plain scalar's source text (`1.50` stays `1.50`, as
    // yaml.v3 keeps it for faas-cli); `~` or nothing is null, which faas-cli passes on as "".
    let raw: Option<BTreeMap<String, Option<String>>> = Option::deserialize(deserializer)?;
    Ok(raw.unwrap_or_default().into_iter().map(|(key, value)| (key, value.unwrap_or_default())).collect())
}

/// A list, or a single string standing for a one-element list.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

#[derive(Deserialize)]
struct EnvironmentFile {
    #[serde(default, deserialize_with = "scalar_map")]
    environment: BTreeMap<String, String>,
}

impl Stack {
    /// Parses stack YAML text as faas-cli does: `${VAR}` substituted first (from an empty environment, see
    /// `envsubst`), then the YAML (a key defined twice is an error), then `provider.name` and `version`.
    pub fn parse(text: &str) -> Result<Self, StackError> {
        Self::parse_file(text, "stack.yml")
    }

    fn parse_file(text: &str, file: &str) -> Result<Self, StackError> {
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(StackError::TooLarge { file: file.to_owned() });
        }
        let text = crate::envsubst::substitute(text)
            .map_err(|source| StackError::Envsubst { file: file.to_owned(), source })?;
        let stack: Stack = parse_yaml(&text, file)?;
        if stack.provider.name != "openfaas" {
            return Err(StackError::Provider(short(&stack.provider.name)));
        }
        if let Some(version) = stack.version.as_deref().filter(|v| *v != "1.0") {
            return Err(StackError::Version(short(version)));
        }
        if stack.functions.is_empty() {
            return Err(StackError::NoFunctions);
        }
        Ok(stack)
    }

    /// Reads `stack.yaml`, or else `stack.yml` (faas-cli's order), at `root`. The file must be a regular file inside
    /// the repository once links are followed, and at most [`MAX_FILE_BYTES`].
    pub fn read(root: &Path) -> Result<Self, StackError> {
        for name in ["stack.yaml", "stack.yml"] {
            match std::fs::symlink_metadata(root.join(name)) {
                Ok(_) => return Self::parse_file(&read_inside(root, name)?, name),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StackError::Missing)
    }
}

impl StackFunction {
    /// The function's environment as `faas-cli deploy` compiles it: `environment`, then each `environment_file` in
    /// order, a later value winning over an earlier one (so a file wins over the inline map). Files are read relative
    /// to `root`, must stay inside it once links are followed, and are not `${…}`-substituted (faas-cli does not).
    pub fn resolved_environment(&self, name: &str, root: &Path) -> Result<BTreeMap<String, String>, StackError> {
        let mut merged = self.environment.clone();
        for file in &self.environment_file {
            let failed = |e: StackError| {
                let reason = match e {
                    StackError::Yaml { kind, location: Some((l, c)), .. } => {
                        format!("not valid YAML at line {l}, column {c}: {kind}")
                    }
                    StackError::Yaml { kind, .. } => format!("not valid YAML: {kind}"),
                    other => other.to_string(),
                };
                StackError::EnvironmentFile { function: name.to_owned(), path: file.clone(), reason }
            };
            let text = read_inside(root, file).map_err(failed)?;
            let parsed: EnvironmentFile = parse_yaml(&text, file).map_err(failed)?;
            merged.extend(parsed.environment);
        }
        Ok(merged)
    }
}

/// Reads `relative` under `root`: inside the repository once every link is followed, a regular file, at most
/// [`MAX_FILE_BYTES`], UTF-8.
fn read_inside(root: &Path, relative: &str) -> Result<String, StackError> {
    let escapes = || StackError::Escapes { path: relative.to_owned() };
    let not_a_file = || StackError::NotAFile { file: relative.to_owned() };
    let path = match resolve_inside(root, relative) {
        Ok(path) => path.ok_or_else(escapes)?,
        // A link to nothing, or a name that is not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_a_file()),
        Err(e) => return Err(e.into()),
    };
    let metadata = std::fs::metadata(&path)?;
    if !metadata.is_file() {
        return Err(not_a_file());
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(StackError::TooLarge { file: relative.to_owned() });
    }
    String::from_utf8(std::fs::read(&path)?).map_err(|_| StackError::NotText { file: relative.to_owned() })
}

/// Parses YAML after the nesting check, refusing a key defined twice (yaml.v3 does; serde's maps would keep the
/// last). Errors say where and what kind, never the text. `file` names the file in errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, StackError> {
    if let Some(line) = too_deep(text) {
        return Err(StackError::TooDeep { file: file.to_owned(), line });
    }
    let yaml_error = |e: serde_yaml_ng::Error| {
        let kind = error_kind(&e.to_string());
        let location = e.location().map(|l| (l.line(), l.column()));
        match location.filter(|_| kind == DUPLICATE_KEY).and_then(|(l, c)| repeated_key(text, l, c)) {
            Some((again, first)) => StackError::Yaml {
                file: file.to_owned(),
                kind: format!("a key is defined twice (already defined at line {first})"),
                location: Some(again),
            },
            None => StackError::Yaml { file: file.to_owned(), kind, location },
        }
    };
    // A `Value` refuses duplicate keys at any depth; the typed parse then gives typed errors their place.
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).map_err(yaml_error)?;
    serde_yaml_ng::from_str(text).map_err(yaml_error)
}

/// What kind of YAML error `message` is, in words that hold nothing from the file: serde's messages quote values
/// (`invalid type: string "…"`) and keys (`duplicate entry with key "…"`), so only fixed texts pass.
fn error_kind(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or_default();
    // What the schema expected is ours, not the file's: `expected a string`, `expected a sequence`.
    let expected = message.rsplit_once(", expected ").map(|(_, e)| format!(" (expected {e})")).unwrap_or_default();
    let expected = if expected.contains(['"', '\'']) { String::new() } else { expected };
    if message.contains("duplicate") {
        DUPLICATE_KEY.into()
    } else if message.contains("invalid type") {
        format!("a value has the wrong type{expected}")
    } else if message.contains("invalid value") || message.contains("unknown variant") {
        format!("a value is not allowed here{expected}")
    } else if message.contains("recursion limit") {
        "nested too deeply".into()
    } else if message.contains("repetition limit") {
        "too many aliases".into()
    } else if message.contains("did not match any variant") {
        "a value has the wrong type (expected a string or a list of strings)".into()
    } else if message.contains(['"', '\'', '`', ':']) {
        "the text is not a valid stack".into()
    } else {
        // libyaml's fixed problem texts: "did not find expected key", "mapping values are not allowed in this context".
        message.to_owned()
    }
}

/// serde reports a repeated key at the start of its mapping; [`repeated_key`] then finds the key itself.
const DUPLICATE_KEY: &str = "a key is defined twice in the mapping that starts here";

/// yaml.v3 (faas-cli) names the line of the repeated key and of its first definition; serde names only where the
/// mapping starts (`line`, `column`). In a block mapping the keys are the lines at that column, so the first one
/// seen twice is found by reading them: its (line, column) and the line of its first definition.
fn repeated_key(text: &str, line: usize, column: usize) -> Option<((usize, usize), usize)> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, whole) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let number = index + 1;
        let rest = if number == line { whole.get(column - 1..)? } else { whole.trim_start_matches(' ') };
        let indent = whole.len() - rest.len();
        if rest.is_empty() || rest.starts_with('#') || indent + 1 > column {
            continue;
        }
        if indent + 1 < column {
            return None;
        }
        let key = rest.split_once(':')?.0.trim();
        if let Some(first) = seen.insert(key, number) {
            return Some(((number, column), first));
        }
    }
    None
}

/// At most 64 characters of a value a message must name (faas-cli's provider and version errors do).
fn short(value: &str) -> String {
    let mut out: String = value.chars().take(64).collect();
    if out.len() < value.len() {
        out.push('…');
    }
    out
}

/// The first line where `text` nests deeper than [`MAX_NESTING`]: indentation levels plus compact `- - ` items,
/// or `[`/`{` brackets outside quotes and comments. A cheap over-estimate, run before the YAML parser.
fn too_deep(text: &str) -> Option<usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let rest = line.trim_start_matches(' ');
        let indent = line.len() - rest.len();
        if flow == 0 && !rest.is_empty() && !rest.starts_with('#') {
            while indents.last().is_some_and(|top| *top >= indent) {
                indents.pop();
            }
            indents.push(indent);
            let dashes = rest.split(' ').take_while(|part| *part == "-").count();
            if indents.len() + dashes > MAX_NESTING {
                return Some(number + 1);
            }
        }
        flow = flow_depth(rest, flow);
        if flow > MAX_NESTING {
            return Some(number + 1);
        }
    }
    None
}

/// The bracket depth after `line`, starting from `depth`; quoted text and comments do not count.
fn flow_depth(line: &str, mut depth: usize) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous = ' ';
    for c in line.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            previous = c;
            continue;
        }
        let starts_token = previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':' | '-');
        match c {
            '"' | '\'' if starts_token => quote = Some(c),
            '#' if previous.is_whitespace() => break,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return depth;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    depth
}

/// `root/relative` when `relative` stays inside `root` (no absolute path, no climbing out with `..`). Lexical only:
/// [`resolve_inside`] also follows links.
pub fn inside(root: &Path, relative: &str) -> Option<PathBuf> {
    normalise(Path::new(relative)).map(|p| root.join(p))
}

/// Where `relative` (a path from stack.yml) really is: `Ok(None)` when it is absolute, climbs out with `..`, or
/// once every symbolic link on the way is followed lies outside `root` or inside its `.git`; an error when it does
/// not exist (or links in a loop).
pub fn resolve_inside(root: &Path, relative: &str) -> std::io::Result<Option<PathBuf>> {
    let Some(normal) = normalise(Path::new(relative)) else { return Ok(None) };
    let root = root.canonicalize()?;
    let real = root.join(normal).canonicalize()?;
    Ok(is_within(&root, &real).then_some(real))
}

/// Whether the real path `real` lies in the repository at the real path `root`, outside its `.git`.
pub fn is_within(root: &Path, real: &Path) -> bool {
    real.starts_with(root) && !real.starts_with(root.join(".git"))
}

/// A relative path with `.` and `..` resolved, or `None` when it is absolute or climbs above its start.
pub fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = r"
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  hello:
    lang: go
    handler: ./hello
    image: alexellis2/hello:0.1
    environment:
      write_debug: true
      retries: 3
    environment_file:
      - env.yml
    secrets: [api-key]
    labels:
      com.openfaas.scale.min: 2
    limits:
      memory: 40Mi
    build_args:
      GO111MODULE: on
    build_options: [dev]
    some_future_key: ignored
  web:
    lang: dockerfile
    handler: ./web
    image: web
    environment_file: single.yml
configuration:
  templates:
    - name: golang-middleware
      source: https://github.com/openfaas/golang-http-template
";

    #[test]
    fn parses_faas_cli_stacks_and_ignores_unknown_keys() {
        let stack = Stack::parse(STACK).unwrap();
        assert_eq!(stack.provider.name, "openfaas");
        let hello = &stack.functions["hello"];
        assert_eq!(hello.lang, "go");
        assert_eq!(hello.environment["write_debug"], "true");
        assert_eq!(hello.environment["retries"], "3");
        assert_eq!(hello.labels["com.openfaas.scale.min"], "2");
        let scalars = Stack::parse(
            "provider: {name: openfaas}\nfunctions:\n  f:\n    environment: {a: 1.50, b: 0x10, c: ~, d: TRUE, e: 08}\n",
        )
        .unwrap();
        let env = &scalars.functions["f"].environment;
        let env: Vec<&str> = env.values().map(String::as_str).collect();
        assert_eq!(env, ["1.50", "0x10", "", "TRUE", "08"], "scalars keep their source text");
        assert_eq!(hello.limits.as_ref().unwrap().memory.as_deref(), Some("40Mi"));
        assert_eq!(hello.build_args["GO111MODULE"], "on");
        assert_eq!(hello.build_options, vec!["dev"]);
        assert_eq!(stack.functions["web"].environment_file, vec!["single.yml"]);
        assert_eq!(stack.configuration.unwrap().templates[0].name, "golang-middleware");
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = Stack::parse("functions:\n  hello:\n    lang: [unclosed\n").unwrap_err().to_string();
        assert!(err.contains("line"), "{err}");
        let err = Stack::parse("provider: {name: openfaas}\n").unwrap_err();
        assert!(matches!(err, StackError::NoFunctions));
    }

    #[test]
    fn environment_files_merge_under_environment_and_stay_inside_the_repository() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("env.yml"), "environment:\n  write_debug: false\n  from_file: yes-it-is\n")
            .unwrap();
        let stack = Stack::parse(STACK).unwrap();
        let env = stack.functions["hello"].resolved_environment("hello", root.path()).unwrap();
        assert_eq!(env["write_debug"], "false", "environment_file wins over environment, as in faas-cli");
        assert_eq!(env["retries"], "3");
        assert_eq!(env["from_file"], "yes-it-is");
        let mut escaping = stack.functions["hello"].clone();
        escaping.environment_file = vec!["../../etc/passwd".into()];
        let err = escaping.resolved_environment("hello", root.path()).unwrap_err().to_string();
        assert!(err.contains("leaves the repository"), "{err}");
    }

    #[test]
    fn refuses_a_provider_other_than_openfaas_in_faas_clis_words() {
        let err = Stack::parse("provider: {name: faas}\nfunctions: {f: {image: f}}\n").unwrap_err().to_string();
        assert_eq!(err, "['openfaas'] is the only valid \"provider.name\" for the OpenFaaS CLI, but you gave: faas");
        let err = Stack::parse("functions: {f: {image: f}}\n").unwrap_err();
        assert!(matches!(err, StackError::Provider(_)), "{err}");
        let err = Stack::parse("version: 2.0\nprovider: {name: openfaas}\nfunctions: {f: {image: f}}\n").unwrap_err();
        assert_eq!(err.to_string(), "[1.0] are the only valid versions for the stack file - found: 2.0");
    }

    #[test]
    fn refuses_a_key_defined_twice_with_its_line_and_column() {
        let text = "provider: {name: openfaas}\nfunctions:\n  f:\n    image: a\n    image: b\n";
        let err = Stack::parse(text).unwrap_err();
        assert!(matches!(err, StackError::Yaml { location: Some((5, 5)), .. }), "{err}");
        assert!(err.to_string().contains("already defined at line 4"), "{err}");
        let text = "provider: {name: openfaas}\nfunctions:\n  f:\n    environment:\n      - a: 1\n        b: 2\n        a: 3\n";
        let err = Stack::parse(text).unwrap_err().to_string();
        assert!(err.contains("line 7, column 9") && err.contains("already defined at line 5"), "{err}");
        let err = Stack::parse("provider: {name: openfaas}\nfunctions: {f: {image: a, image: b}}\n").unwrap_err();
        assert!(err.to_string().contains("defined twice"), "flow mappings too: {err}");
        let text = "provider: {name: openfaas}\nfunctions:\n  f:\n    image: a\n  f:\n    image: b\n";
        assert!(Stack::parse(text).unwrap_err().to_string().contains("defined twice"));
    }

    #[test]
    fn yaml_errors_never_quote_the_file() {
        let secret = "ghp_SuperSecretToken1234567890";
        for text in [
            format!("{secret}\n  - ]: [\n"),
            format!("provider: {{name: openfaas}}\nfunctions:\n  f:\n    environment: {secret}\n"),
            format!("provider: {{name: openfaas}}\nfunctions:\n  f:\n    secrets: {{a: {secret}}}\n"),
            format!("provider: {{name: openfaas}}\nfunctions: {{{secret}: {{image: a}}, {secret}: {{image: b}}}}\n"),
            format!("provider: {{name: openfaas}}\nfunctions:\n  f:\n    labels: {{a: [{secret}]}}\n"),
            format!("\"{secret}"),
        ] {
            let err = Stack::parse(&text).unwrap_err().to_string();
            assert!(!err.contains("ghp_"), "{err}");
            assert!(err.contains("line"), "{err}");
        }
    }

    #[test]
    fn refuses_deep_nesting_at_once() {
        let started = std::time::Instant::now();
        let brackets = format!("functions: {}", "[".repeat(100_000));
        assert!(matches!(Stack::parse(&brackets).unwrap_err(), StackError::TooDeep { line: 1, .. }));
        let blocks: String = std::iter::once("functions:\n".to_owned())
            .chain((1..200).map(|d| format!("{}k:\n", " ".repeat(d))))
            .collect();
        assert!(matches!(Stack::parse(&blocks).unwrap_err(), StackError::TooDeep { .. }));
        let dashes = format!("functions:\n{}x\n", "- ".repeat(100));
        assert!(matches!(Stack::parse(&dashes).unwrap_err(), StackError::TooDeep { .. }));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        let big = format!("provider: {{name: openfaas}}\n#{}\n", "x".repeat(2 << 20));
        assert!(matches!(Stack::parse(&big).unwrap_err(), StackError::TooLarge { .. }));
        // Brackets inside quotes and comments are text.
        let quoted = format!(
            "provider: {{name: openfaas}}\nfunctions:\n  f:\n    image: \"{}\" # {}\n",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(Stack::parse(&quoted).is_ok());
    }

    #[test]
    fn substitutes_variables_from_an_empty_environment() {
        let text = "provider: {name: openfaas}\nfunctions:\n  f:\n    image: \"${REGISTRY:-docker.io}/f:${TAG}\"\n    environment:\n      path: ${PATH}\n      cost: $$5\n";
        let stack = Stack::parse(text).unwrap();
        assert_eq!(stack.functions["f"].image, "docker.io/f:");
        assert_eq!(stack.functions["f"].environment["path"], "", "the process's PATH does not leak");
        assert_eq!(stack.functions["f"].environment["cost"], "$5");
    }

    #[test]
    fn files_are_resolved_inside_the_repository_through_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "environment:\n  token: ghp_leak\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("stack.yml")).unwrap();
        let err = Stack::read(root.path()).unwrap_err();
        assert!(matches!(err, StackError::Escapes { .. }), "{err}");
        std::fs::remove_file(root.path().join("stack.yml")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("esc")).unwrap();
        std::fs::write(root.path().join("env.yml"), "environment:\n  a: b\n").unwrap();
        std::os::unix::fs::symlink("env.yml", root.path().join("linked.yml")).unwrap();
        let mut function = StackFunction { environment_file: vec!["linked.yml".into()], ..Default::default() };
        assert_eq!(function.resolved_environment("f", root.path()).unwrap()["a"], "b", "a link inside is followed");
        function.environment_file = vec!["esc/secret".into()];
        let err = function.resolved_environment("f", root.path()).unwrap_err().to_string();
        assert!(err.contains("leaves the repository") && !err.contains("ghp_"), "{err}");
        std::fs::create_dir(root.path().join(".git")).unwrap();
        std::fs::write(root.path().join(".git/config"), "environment: {}\n").unwrap();
        function.environment_file = vec![".git/config".into()];
        assert!(function.resolved_environment("f", root.path()).is_err());
    }
}
