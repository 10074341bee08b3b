//! `distill init`: the starter config it writes passes `distill status` unchanged, for every
//! teacher, and an existing config is never overwritten.

mod common;

use common::{distill, repo_root};

#[test]
fn every_starter_config_passes_status_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    for (teacher, student) in [("local", "nano"), ("openai", "small"), ("vllm", "qwen2.5-0.5b"), ("llamacpp", "gpt2-124m"), ("ollama", "llama-nano")] {
        let folder = dir.path().join(teacher);
        let out = distill(dir.path(), &["init", folder.to_str().unwrap(), "--teacher", teacher, "--student", student]);
        assert_eq!(out.status.code(), Some(0), "{teacher}: {}", String::from_utf8_lossy(&out.stderr));
        let config = folder.join("distill.toml");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("distill --config {} status", config.display())), "{said}");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains(&format!("model = \"{student}\"")), "{teacher}: the student preset is in the config");

        // `status` runs from the repository root, where the default data is (issue #17).
        let work = dir.path().join(format!("work-{teacher}"));
        let out = distill(&repo_root(), &["status", "--config", config.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{teacher}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("never run"));
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text, "status leaves the config as it is");
    }
}

#[test]
fn an_existing_config_is_kept_and_a_bad_preset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("distill.toml"), "# mine\n").unwrap();
    let out = distill(dir.path(), &["init", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists; nothing was written"));
    assert_eq!(std::fs::read_to_string(dir.path().join("distill.toml")).unwrap(), "# mine\n");

    let out = distill(dir.path(), &["init", "other", "--student", "gpt-5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such model preset; choose one of nano"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("other").exists(), "nothing is created for a refused preset");
}
