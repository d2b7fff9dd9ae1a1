//! Golden tests: each tests/ui/NAME.toml is a bad stack; `provision plan`
//! on it must fail with exactly tests/ui/NAME.err. Run with BLESS=1 to
//! write the .err files from the current output (then review the diff).

use crate::support::{provision_in_repo, repo_root};

#[test]
fn bad_stacks_give_their_golden_errors() {
    let dir = repo_root().join("tests/ui");
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    cases.sort();
    assert!(cases.len() >= 15, "the golden cases are missing");

    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().to_string();
        let run = provision_in_repo(&["plan", "-f", &format!("tests/ui/{name}.toml")]);
        let root = repo_root().display().to_string();
        let actual = run.stderr.replace(&root, "$ROOT");
        let expected_path = dir.join(format!("{name}.err"));
        if run.code != Some(1) {
            failures.push(format!("{name}: expected exit 1, got {:?}\n{}", run.code, run.stderr));
            continue;
        }
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!("{name}: stderr differs from {name}.err\n--- expected\n{expected}\n--- actual\n{actual}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::Read;
    // `provision plan --json | head -c 10`: the reader goes away early, and
    // the plan is larger than a pipe's buffer, so the write meets a closed pipe.
    let services: String = (0..300).map(|i| format!("[services.cache{i}]\nplugin = \"redis\"\n")).collect();
    let project = crate::support::Project::new(&services);
    let mut child = crate::support::provision_cmd(&crate::support::shared_cache())
        .current_dir(project.path())
        .args(["plan", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("crashed"), "{stderr}");
}
