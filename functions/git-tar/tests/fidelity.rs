//! faas-cli fidelity (issue 14): one stack per rule, pushed through git-tar, with the result faas-cli's source gives
//! (go-sdk `stack.ParseYAMLData`, drone/envsubst v1.0.3, `commands/deploy.go`, `builder/build.go`, go-sdk
//! `CreateBuildContext`). Each case is named after its rule.

mod common;

use std::collections::BTreeMap;

use common::*;
use shared::build::BuildConfig;
use shared::event::BuildEvent;

const HEAD: &str = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n";
/// A dockerfile function `f` whose handler is `./f`; cases add keys after it.
const F: &str = "  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n";
const DOCKERFILE: (&str, &str) = ("f/Dockerfile", "FROM scratch\n");

/// What a pushed case produced: `f`'s event, its tar's entries and its build args.
struct Built {
    event: BuildEvent,
    entries: BTreeMap<String, Vec<u8>>,
    build_args: BTreeMap<String, String>,
}

enum Expect {
    /// Deployed; the check gets function `f`.
    Builds(fn(&Built)),
    /// Refused; the `stack-deploy` description holds each text.
    Fails(&'static [&'static str]),
}

struct Case {
    rule: &'static str,
    stack: String,
    files: Vec<(&'static str, &'static str)>,
    expect: Expect,
}

fn case(rule: &'static str, stack: &str, files: &[(&'static str, &'static str)], expect: Expect) -> Case {
    Case { rule, stack: stack.to_owned(), files: files.to_vec(), expect }
}

fn env(built: &Built, key: &str) -> String {
    built.event.environment.get(key).cloned().unwrap_or_else(|| panic!("`{key}` in {:?}", built.event.environment))
}

fn substitution_cases() -> Vec<Case> {
    vec![
        case(
            "unset_variable_becomes_empty_even_when_the_platform_sets_it",
            &format!("{HEAD}{F}    environment:\n      token: \"${{OFC_PLATFORM_TOKEN}}\"\n      path: \"${{PATH}}\"\n"),
            &[DOCKERFILE],
            Expect::Builds(|b| {
                assert_eq!(env(b, "token"), "");
                assert_eq!(env(b, "path"), "");
            }),
        ),
        case(
            "default_is_used_for_an_unset_variable_with_every_default_form",
            &format!("{HEAD}{F}    environment:\n      a: ${{X:-d}}\n      b: ${{X:=e}}\n      c: ${{X=f}}\n      d: ${{OFC_PLATFORM_TOKEN:-g}}\n"),
            &[DOCKERFILE],
            Expect::Builds(|b| {
                assert_eq!([env(b, "a"), env(b, "b"), env(b, "c"), env(b, "d")], ["d", "e", "f", "g"]);
            }),
        ),
        case(
            "double_dollar_is_a_literal_dollar_and_bare_dollar_is_left_alone",
            &format!("{HEAD}{F}    environment:\n      a: $${{X}}\n      b: $$Y\n      c: $HOME\n"),
            &[DOCKERFILE],
            Expect::Builds(|b| {
                assert_eq!([env(b, "a"), env(b, "b"), env(b, "c")], ["${X}", "$Y", "$HOME"]);
            }),
        ),
        case(
            "dash_default_without_colon_is_a_substitution_error",
            &format!("{HEAD}{F}    environment:\n      a: ${{X-d}}\n"),
            &[DOCKERFILE],
            Expect::Fails(&["missing closing brace"]),
        ),
        case(
            "environment_files_are_not_substituted",
            &format!("{HEAD}{F}    environment_file: [env.yml]\n"),
            &[DOCKERFILE, ("env.yml", "environment:\n  a: ${X:-d}\n")],
            Expect::Builds(|b| assert_eq!(env(b, "a"), "${X:-d}")),
        ),
    ]
}

fn merge_cases() -> Vec<Case> {
    vec![
        case(
            "environment_file_overrides_inline_environment",
            &format!("{HEAD}{F}    environment:\n      a: inline\n      b: inline\n    environment_file: [one.yml]\n"),
            &[DOCKERFILE, ("one.yml", "environment:\n  a: file\n")],
            Expect::Builds(|b| assert_eq!([env(b, "a"), env(b, "b")], ["file", "inline"])),
        ),
        case(
            "later_environment_file_overrides_earlier_one",
            &format!("{HEAD}{F}    environment_file: [one.yml, two.yml]\n"),
            &[DOCKERFILE, ("one.yml", "environment:\n  a: one\n  b: one\n"), ("two.yml", "environment:\n  a: two\n")],
            Expect::Builds(|b| assert_eq!([env(b, "a"), env(b, "b")], ["two", "one"])),
        ),
        case(
            "scalars_keep_their_source_text",
            &format!("{HEAD}{F}    environment:\n      a: 1.50\n      b: true\n      c: 8080\n      d:\n"),
            &[DOCKERFILE],
            Expect::Builds(|b| assert_eq!([env(b, "a"), env(b, "b"), env(b, "c"), env(b, "d")], ["1.50", "true", "8080", ""])),
        ),
        case(
            "fprocess_readonly_root_filesystem_and_constraints_travel_to_buildshiprun",
            &format!("{HEAD}{F}    fprocess: ./run\n    readonly_root_filesystem: true\n    constraints: [\"node.role==worker\"]\n"),
            &[DOCKERFILE],
            Expect::Builds(|b| {
                assert_eq!(b.event.fprocess.as_deref(), Some("./run"));
                assert_eq!(b.event.readonly_root_filesystem, Some(true));
                assert_eq!(b.event.constraints, ["node.role==worker"]);
            }),
        ),
        case(
            "unknown_keys_are_ignored",
            &format!("{HEAD}{F}    some_future_key: [1, 2]\nsomething_else: true\n"),
            &[DOCKERFILE],
            Expect::Builds(|_| {}),
        ),
    ]
}

fn parse_cases() -> Vec<Case> {
    vec![
        case(
            "provider_other_than_openfaas_is_refused_in_faas_clis_words",
            &format!("provider:\n  name: faas\nfunctions:\n{F}"),
            &[DOCKERFILE],
            Expect::Fails(&[
                "['openfaas'] is the only valid \"provider.name\" for the OpenFaaS CLI, but you gave: faas",
            ]),
        ),
        case(
            "missing_provider_is_refused",
            &format!("functions:\n{F}"),
            &[DOCKERFILE],
            Expect::Fails(&["is the only valid \"provider.name\""]),
        ),
        case(
            "version_other_than_1_0_is_refused",
            &format!("version: 2.0\nprovider:\n  name: openfaas\nfunctions:\n{F}"),
            &[DOCKERFILE],
            Expect::Fails(&["[1.0] are the only valid versions for the stack file - found: 2.0"]),
        ),
        case(
            "function_defined_twice_is_refused_with_line_and_column",
            &format!("{HEAD}{F}{F}"),
            &[DOCKERFILE],
            Expect::Fails(&["defined twice", "line 9, column 3", "already defined at line 5"]),
        ),
        case(
            "field_defined_twice_is_refused_with_line_and_column",
            &format!("{HEAD}{F}    image: g\n"),
            &[DOCKERFILE],
            Expect::Fails(&["defined twice", "line 9, column 5", "already defined at line 8"]),
        ),
        case(
            "stack_yaml_is_read_before_stack_yml",
            "provider: {name: nope}\nfunctions: {}\n",
            &[
                DOCKERFILE,
                (
                    "stack.yaml",
                    "provider: {name: openfaas}\nfunctions:\n  f: {lang: dockerfile, handler: ./f, image: f}\n",
                ),
            ],
            Expect::Builds(|_| {}),
        ),
    ]
}

fn build_cases() -> Vec<Case> {
    let demo = [
        ("template/demo/Dockerfile", "FROM scratch\n"),
        ("template/demo/template.yml", "language: demo\nbuild_options:\n  - name: dev\n    packages: [make, gcc]\n  - name: tls\n    packages: [openssl, gcc]\n"),
        ("f/handler.txt", "hi\n"),
    ];
    vec![
        case(
            "lang_dockerfile_is_case_sensitive",
            &format!("{HEAD}  f:\n    lang: Dockerfile\n    handler: ./f\n    image: f\n"),
            &[DOCKERFILE],
            Expect::Fails(&["language template: Dockerfile not supported"]),
        ),
        case(
            "build_option_packages_are_deduplicated_sorted_and_merged_with_additional_package",
            &format!("{HEAD}  f:\n    lang: demo\n    handler: ./f\n    image: f\n    build_options: [tls, dev]\n    build_args:\n      ADDITIONAL_PACKAGE: \"curl  make\"\n"),
            &demo,
            Expect::Builds(|b| assert_eq!(b.build_args["ADDITIONAL_PACKAGE"], "curl gcc make openssl")),
        ),
        case(
            "additional_package_is_always_set",
            &format!("{HEAD}{F}"),
            &[DOCKERFILE],
            Expect::Builds(|b| assert_eq!(b.build_args["ADDITIONAL_PACKAGE"], "")),
        ),
        case(
            "unknown_build_option_is_refused",
            &format!("{HEAD}  f:\n    lang: demo\n    handler: ./f\n    image: f\n    build_options: [gpu]\n"),
            &demo,
            Expect::Fails(&["build option unavailable for demo", "gpu"]),
        ),
        case(
            "configuration_copy_lands_at_the_path_as_written",
            &format!("{HEAD}{F}configuration:\n  copy: [common/lib, ./notes.txt]\n"),
            &[DOCKERFILE, ("common/lib/util.txt", "util\n"), ("notes.txt", "notes\n")],
            Expect::Builds(|b| {
                assert_eq!(b.entries["context/common/lib/util.txt"], b"util\n");
                assert_eq!(b.entries["context/notes.txt"], b"notes\n");
            }),
        ),
        case(
            "copy_of_the_whole_project_is_refused",
            &format!("{HEAD}{F}configuration:\n  copy: [./]\n"),
            &[DOCKERFILE],
            Expect::Fails(&["forbidden path appears to equal the entire project"]),
        ),
        case(
            "handler_build_and_template_entries_are_skipped_and_dotfiles_kept",
            &format!("{HEAD}{F}"),
            &[DOCKERFILE, ("f/build/x", "x"), ("f/template/y", "y"), ("f/.dockerignore", "*.md\n"), ("f/sub/build/z", "z")],
            Expect::Builds(|b| {
                let keys: Vec<&str> = b.entries.keys().map(String::as_str).collect();
                assert!(!keys.iter().any(|k| k.starts_with("context/build") || k.starts_with("context/template")));
                assert!(keys.contains(&"context/.dockerignore") && keys.contains(&"context/sub/build/z"), "{keys:?}");
            }),
        ),
        case(
            "handler_that_is_a_file_is_refused",
            &format!("{HEAD}  f:\n    lang: dockerfile\n    handler: ./f/Dockerfile\n    image: f\n"),
            &[DOCKERFILE],
            Expect::Fails(&["is not a folder"]),
        ),
    ]
}

async fn run(case: Case) {
    let harness = start().await;
    let repo = harness.repo("fidelity");
    repo.write("stack.yml", &case.stack);
    for (path, content) in &case.files {
        repo.write(path, content);
    }
    let sha = repo.commit(case.rule);
    let (status, answer) = harness.send(&harness.push_event("fidelity", &sha)).await;
    match case.expect {
        Expect::Builds(check) => {
            assert_eq!(status, 200, "{}: {answer}", case.rule);
            let (event, entries) = harness.tars().remove("f").unwrap_or_else(|| panic!("{}: f was built", case.rule));
            let build_args = if event.skip_build {
                BTreeMap::new()
            } else {
                serde_json::from_slice::<BuildConfig>(&entries["config"]).unwrap().build_args
            };
            check(&Built { event, entries, build_args });
        }
        Expect::Fails(texts) => {
            assert_eq!(status, 422, "{}: {answer}", case.rule);
            let description = harness.stack_deploy().description;
            for text in texts {
                assert!(description.contains(text), "{}: `{text}` in `{description}`", case.rule);
            }
            assert!(harness.gateway.requests_to("/function/buildshiprun").is_empty(), "{}", case.rule);
        }
    }
}

#[tokio::test]
async fn stacks_build_as_faas_cli_builds_them() {
    // A platform variable of the same name as one the stack substitutes: it must not reach the build.
    std::env::set_var("OFC_PLATFORM_TOKEN", "platform-secret-value");
    let cases: Vec<Case> =
        [substitution_cases(), merge_cases(), parse_cases(), build_cases()].into_iter().flatten().collect();
    let mut rules = std::collections::BTreeSet::new();
    for case in cases {
        assert!(rules.insert(case.rule), "one case per rule: {}", case.rule);
        eprintln!("rule: {}", case.rule);
        run(case).await;
    }
}
