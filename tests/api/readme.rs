//! The README's examples, run as a newcomer would: every ```sh block, in order and as written,
//! in one shell in a fresh folder, with the built binary as `backfilld`. (Blocks fenced
//! ```shell install, build, benchmark or serve in the foreground, and are not run.)
//!
//! `curl` is wrapped to fail the run on a 404 or a 5xx answer (an example naming a record
//! that does not exist, or breaking the server) and on a refused connection; other refusals
//! (400, 401, 409) are what some examples show.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::helpers::BIN;

/// The ```sh blocks of `markdown`, with the line each starts on.
fn sh_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = vec![];
    let mut current: Option<(usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some((n + 1, String::new())),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

const PREAMBLE: &str = r#"set -e
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
curl() {
  local out code
  out=$(command curl -sS -w '\n%{http_code}' "$@") || return $?
  code=${out##*$'\n'}
  printf '%s\n' "${out%$'\n'*}"
  case $code in
    404|5??) echo "README example: HTTP $code from curl $*" >&2; return 1 ;;
  esac
}
"#;

#[test]
fn every_sh_example_in_the_readme_runs_in_order_as_written() {
    let _turn = crate::helpers::busy_turn();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 15, "{} blocks", blocks.len());
    // The README's 6789, free (a server left over, or Mage, would answer instead).
    assert!(std::net::TcpListener::bind("127.0.0.1:6789").is_ok(), "port 6789 is taken: the README's examples need it");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::copy(root.join("examples/seed-example.json"), dir.path().join("examples/seed-example.json")).unwrap();
    let mut script = PREAMBLE.to_string();
    for (line, block) in &blocks {
        script.push_str(&format!("echo '### README.md line {line}'\n{block}\n"));
    }
    script.push_str("echo '### README done'\n");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    // Bounded: a server that never starts would leave an `until curl` waiting for ever.
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=10", "600", "bash", "-c"])
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("BACKFILLD_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().rev().find(|l| l.starts_with("### README")).unwrap_or("(none)");
    assert!(out.status.success(), "the README's examples failed after {last}:\n{stdout}\n{stderr}");
    assert!(stdout.ends_with("### README done\n"), "{stdout}");
    // What the examples say they show.
    for shown in [
        "25 runs: 25 completed",
        "\"status\":\"completed\"",
        "\"name\":\"sparkling glitter\"",
        "\"roles_display\":\"Owner\"",
        "access-control-allow-origin: http://localhost:3000",
        "the lease of worker 'w1' on pipeline run 2 expired",
        "backfilld_claims_total 1",
        "x-request-id: trace-0f8fad5b",
        "{\"ready\":true}",
        "restored: identical",
    ] {
        assert!(stdout.contains(shown), "the README's examples did not show {shown:?}:\n{stdout}\n{stderr}");
    }
}

#[test]
fn blocks_are_found_with_their_lines() {
    let md = "a\n```sh\necho 1\n```\n```shell\nnot run\n```\n```sh\necho 2\necho 3\n```\n";
    assert_eq!(sh_blocks(md), vec![(2, "echo 1\n".to_string()), (8, "echo 2\necho 3\n".to_string())]);
}
