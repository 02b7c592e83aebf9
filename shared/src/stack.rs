//! `stack.yml` in faas-cli's schema: what git-tar builds and what the local stack runs. Unknown keys are ignored,
//! as faas-cli ignores them; errors carry the line and column.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::event::FunctionResources;

/// Why a stack file could not be used; every message is one a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("no stack.yml (or stack.yaml) at the repository root")]
    Missing,
    #[error("stack.yml is not valid YAML for a stack{}: {message}", location.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
    Yaml { message: String, location: Option<(usize, usize)> },
    #[error("stack.yml has no functions")]
    NoFunctions,
    #[error("function `{function}`: {reason}")]
    Function { function: String, reason: String },
    #[error("function `{function}`: environment_file `{path}` cannot be read: {reason}")]
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
    let raw: Option<BTreeMap<String, serde_yaml_ng::Value>> = Option::deserialize(deserializer)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_yaml_ng::Value::Null => String::new(),
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                serde_yaml_ng::Value::String(s) => s,
                other => return Err(serde::de::Error::custom(format!("`{key}` must be a plain value, not {other:?}"))),
            };
            Ok((key, text))
        })
        .collect()
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
    /// Parses stack YAML text.
    pub fn parse(text: &str) -> Result<Self, StackError> {
        let stack: Stack = serde_yaml_ng::from_str(text).map_err(|e| StackError::Yaml {
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
            location: e.location().map(|l| (l.line(), l.column())),
        })?;
        if stack.functions.is_empty() {
            return Err(StackError::NoFunctions);
        }
        Ok(stack)
    }

    /// Reads `stack.yml`, or else `stack.yaml`, at `root`.
    pub fn read(root: &Path) -> Result<Self, StackError> {
        for name in ["stack.yml", "stack.yaml"] {
            match std::fs::read_to_string(root.join(name)) {
                Ok(text) => return Self::parse(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StackError::Missing)
    }
}

impl StackFunction {
    /// The function's environment as OpenFaaS receives it: each `environment_file` in order, then `environment`,
    /// later values winning. Files are read relative to `root` and may not lie outside it.
    pub fn resolved_environment(&self, name: &str, root: &Path) -> Result<BTreeMap<String, String>, StackError> {
        let mut merged = BTreeMap::new();
        for file in &self.environment_file {
            let path = inside(root, file).ok_or_else(|| StackError::EnvironmentFile {
                function: name.to_owned(),
                path: file.clone(),
                reason: "the path leaves the repository".into(),
            })?;
            let unreadable =
                |reason: String| StackError::EnvironmentFile { function: name.to_owned(), path: file.clone(), reason };
            let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
            let parsed: EnvironmentFile = serde_yaml_ng::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
            merged.extend(parsed.environment);
        }
        merged.extend(self.environment.clone());
        Ok(merged)
    }
}

/// `root/relative` when `relative` stays inside `root` (no absolute path, no climbing out with `..`).
pub fn inside(root: &Path, relative: &str) -> Option<PathBuf> {
    normalise(Path::new(relative)).map(|p| root.join(p))
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
        let err = Stack::parse("provider: {name: x}\n").unwrap_err();
        assert!(matches!(err, StackError::NoFunctions));
    }

    #[test]
    fn environment_files_merge_under_environment_and_stay_inside_the_repository() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("env.yml"), "environment:\n  write_debug: false\n  from_file: yes-it-is\n")
            .unwrap();
        let stack = Stack::parse(STACK).unwrap();
        let env = stack.functions["hello"].resolved_environment("hello", root.path()).unwrap();
        assert_eq!(env["write_debug"], "true", "environment wins over environment_file");
        assert_eq!(env["from_file"], "yes-it-is");
        let mut escaping = stack.functions["hello"].clone();
        escaping.environment_file = vec!["../../etc/passwd".into()];
        let err = escaping.resolved_environment("hello", root.path()).unwrap_err().to_string();
        assert!(err.contains("leaves the repository"), "{err}");
    }
}
