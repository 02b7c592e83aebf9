//! Start-up configuration of the template store and the log store: read once, and a malformed value stops the
//! start, named.
//!
//! One test in its own binary, because it changes the process's environment.

use std::time::Duration;

use git_tar::Config;

#[test]
fn template_settings_are_read_once_and_named_when_wrong() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("payload-secret"), "p").unwrap();
    std::env::set_var("secret_mount_path", secrets.path());
    std::env::set_var("gateway_url", "http://127.0.0.1:8080/");
    let logs = tempfile::tempdir().unwrap();
    std::env::set_var("log_store_path", logs.path().join("builds"));

    let config = Config::from_env().unwrap();
    assert_eq!(config.custom_templates.len(), 1, "the official repository by default");
    assert_eq!(config.custom_templates[0].url, "https://github.com/openfaas/templates.git");
    assert_eq!(config.templates_refresh, Duration::from_secs(300));
    assert!(!config.allow_user_templates, "user build definitions are off by default");

    std::env::set_var("custom_templates", "https://a.example/t.git#v1, https://b.example/t.git  https://c.example/t");
    std::env::set_var("templates_refresh", "30s");
    std::env::set_var("enable_dockerfile_lang", "true");
    let config = Config::from_env().unwrap();
    let shown: Vec<String> = config.custom_templates.iter().map(git_tar::templates::TemplateRepo::shown).collect();
    assert_eq!(shown, ["https://a.example/t.git#v1", "https://b.example/t.git", "https://c.example/t"]);
    assert_eq!(config.templates_refresh, Duration::from_secs(30));
    assert!(config.allow_user_templates);

    std::env::set_var("custom_templates", "git@github.com:openfaas/templates.git");
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("custom_templates") && err.contains("git@github.com"), "{err}");
    std::env::set_var("custom_templates", "https://a.example/t.git#--upload-pack=x");
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("custom_templates"), "{err}");

    std::env::set_var("custom_templates", "https://a.example/t.git");
    std::env::set_var("templates_refresh", "soon");
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("templates_refresh"), "{err}");

    std::env::set_var("templates_refresh", "30s");

    // The push records' store: read once at start too, a malformed value named.
    let config = Config::from_env().unwrap();
    assert_eq!(config.log_store.location(), logs.path().join("builds").display().to_string());
    assert_eq!(config.gateway_public_url.as_str(), "http://127.0.0.1:8080/", "the gateway's own URL when unset");
    std::env::set_var("log_retention", "forever");
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("log_retention"), "{err}");
    std::env::remove_var("log_retention");
    std::fs::write(logs.path().join("file"), "").unwrap();
    std::env::set_var("log_store_path", logs.path().join("file"));
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("log_store_path"), "{err}");

    std::env::set_var("log_store_path", logs.path().join("builds"));

    // The registry's push address: unset by default (the pull address's host), a host[:port] when set.
    assert_eq!(Config::from_env().unwrap().registry_push_url, None);
    std::env::set_var("registry_push_url", "registry.faasd:5000");
    assert_eq!(Config::from_env().unwrap().registry_push_url.as_deref(), Some("registry.faasd:5000"));
    std::env::set_var("registry_push_url", "http://registry.faasd:5000/v2");
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("registry_push_url"), "{err}");
    std::env::remove_var("registry_push_url");
}
