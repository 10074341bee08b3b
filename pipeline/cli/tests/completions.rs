//! `distill completions <shell>` and `distill man`: generated from the command line's own
//! definition, so they list every subcommand and flag; they need no config and work anywhere.

use std::process::Command;

fn distill(args: &[&str]) -> String {
    // An empty folder: neither command reads a config or any other file.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distill")).args(args).current_dir(dir.path()).output().expect("the distill binary runs");
    assert!(out.status.success(), "distill {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const SUBCOMMANDS: [&str; 15] =
    ["tokenizer", "teacher-bootstrap", "prompts", "teacher", "filter", "shards", "train", "eval", "report", "serve", "run", "status", "completions", "man", "init"];

/// What bash offers for the words typed so far, asked the way bash asks a completion function.
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("distill.bash");
    std::fs::write(&path, script).unwrap();
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n_distill distill '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash").arg("-c").arg(program).output().expect("bash runs");
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_subcommands_and_their_flags() {
    let script = distill(&["completions", "bash"]);
    let mut offered = bash_complete(&script, &["distill", "tea"]);
    offered.sort();
    assert_eq!(offered, vec!["teacher", "teacher-bootstrap"]);
    assert_eq!(bash_complete(&script, &["distill", "train", "--res"]), vec!["--resume"]);
    let all = bash_complete(&script, &["distill", ""]);
    for s in SUBCOMMANDS {
        assert!(all.iter().any(|o| o == s), "bash does not offer '{s}': {all:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let script = distill(&["completions", shell]);
        for s in SUBCOMMANDS {
            assert!(script.contains(s), "the {shell} script does not name '{s}'");
        }
    }
    assert!(distill(&["completions", "zsh"]).starts_with("#compdef distill"));
}

#[test]
fn the_man_page_renders_with_every_subcommand() {
    let page = distill(&["man"]);
    assert!(page.contains(".TH distill 1"), "{}", &page[..page.len().min(300)]);
    let mut nroff = Command::new("groff").args(["-man", "-Tutf8", "-P-cbou"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("groff runs");
    use std::io::Write;
    nroff.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = nroff.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for heading in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS"] {
        assert!(text.contains(heading), "no {heading} section in the rendered page");
    }
    for s in SUBCOMMANDS {
        assert!(text.contains(&format!("distill-{s}")), "the page does not list '{s}'");
    }
}
