//! The documentation's examples, run as a reader would: every ```sh block of README.md and of
//! each page of docs/, in order and as written, one shell per page in a fresh folder, with
//! the built binary as `backfilld` and `BACKFILLD_BIND` set to a free port (the examples name
//! the server's address through it alone, so they need no particular port). Blocks fenced
//! ```shell install, build, benchmark or serve in the foreground, and are not run.
//!
//! `curl` is wrapped to fail the run on a 404 or a 5xx answer (an example naming a record
//! that does not exist, or breaking the server) and on a refused connection; other refusals
//! (400, 401, 409) are what some examples show. A ```json block right after a ```sh block
//! shows what that block prints: the last line of its output that is a JSON object must be
//! the same JSON. What else each page's examples show is checked, in order, after the run.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::helpers::BIN;

/// The pages whose examples run, each with what its output must show, in this order.
const PAGES: [(&str, &[&str]); 5] = [
    (
        "README.md",
        &[
            "25 runs: 25 completed",
            "\"status\":\"completed\"",
            "imported 1 backfill(s)",
            "2 runs: 1 completed, 1 failed",
            "the worker exited 1",
            "\"status\":\"failed\"",
            "\"error\":\"the command exited with status 1\"",
            "2 runs: 2 completed",
            "\"status\":\"completed\"",
        ],
    ),
    (
        "docs/api.md",
        &[
            "\"name\":\"sparkling glitter\"",
            "\"pipeline_run_dates\":[",
            "\"name\":\"sparkling glitter, EU only\"",
            "\"status\":\"initial\"",
            "\"status\":\"cancelled\"",
            "\"pipeline_runs\":[",
            "\"status\":\"running\"",
            "\"backfilld_version\"",
        ],
    ),
    (
        "docs/workers.md",
        &[
            "\"lease_expires_at\"",
            "the lease of worker 'w1' on pipeline run 2 expired",
            "\"is_paused\":true",
            "\"attempt\":2",
            "3 runs: 3 completed",
        ],
    ),
    (
        "docs/auth.md",
        &[
            "\"backfills\":[]",
            "0 runs: 0 completed",
            "ada@example.com",
            "\"roles_display\":\"Owner\"",
            "access-control-allow-origin: http://localhost:3000",
        ],
    ),
    (
        "docs/operations.md",
        &[
            "3 runs: 3 completed",
            "restored: identical",
            "x-request-id: trace-0f8fad5b",
            "backfilld_pipeline_runs{status=\"completed\"} 3",
            "{\"ready\":true}",
        ],
    ),
];

/// The one line through which an example may name the default port: the README's, which
/// keeps an address already set.
const SETUP: &str = "export BACKFILLD_BIND=${BACKFILLD_BIND:-127.0.0.1:6789}";

/// A ```sh block: the line it starts on, its text, and the ```json block that follows it
/// (its line and text), if one does.
#[derive(Debug, PartialEq)]
struct Block {
    line: usize,
    text: String,
    shows: Option<(usize, String)>,
}

/// The ```sh blocks of `markdown`, each with the ```json block right after it (blank lines
/// between allowed), if any.
fn sh_blocks(markdown: &str) -> Vec<Block> {
    // Every fenced block: its language, its first line, its text.
    let mut fenced: Vec<(String, usize, String)> = vec![];
    let mut current: Option<(String, usize, String)> = None;
    // For each fenced block, whether only blank lines came between it and the one before.
    let mut adjacent = vec![];
    let mut blank_since_last = false;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_end();
        match &mut current {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    adjacent.push(blank_since_last);
                    current = Some((lang.to_string(), n + 1, String::new()));
                } else if !trimmed.is_empty() {
                    blank_since_last = false;
                }
            }
            Some(_) if trimmed == "```" => {
                fenced.push(current.take().unwrap());
                blank_since_last = true;
            }
            Some((_, _, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let mut blocks = vec![];
    for (i, (lang, line, text)) in fenced.iter().enumerate() {
        if lang != "sh" {
            continue;
        }
        let shows =
            fenced.get(i + 1).filter(|(next, _, _)| next == "json" && adjacent[i + 1]).map(|(_, l, t)| (*l, t.clone()));
        blocks.push(Block { line: *line, text: text.clone(), shows });
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
    404|5??) echo "example: HTTP $code from curl $*" >&2; return 1 ;;
  esac
}
"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A port free now, for the examples' server.
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// A fresh folder with what the examples read from a checkout: examples/*.json.
fn fresh_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, dir.path().join("examples").join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// `args` in `dir`, as the examples run: the built binary first on the PATH, no `BACKFILLD_`
/// variable but `BACKFILLD_BIND` (a free port) and those of `env`, bounded (a server that never
/// starts would leave an `until curl` waiting for ever).
fn command_in(dir: &Path, bind: &str, env: &[(String, String)], args: &[&str]) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=10", "600"]).args(args).current_dir(dir).env("PATH", path).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("BACKFILLD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("BACKFILLD_BIND", bind);
    cmd.stdin(Stdio::null());
    cmd
}

/// Whether `shown` appear in `out` in this order; else the first that does not.
fn in_order<'a>(out: &str, shown: &[&'a str]) -> Result<(), &'a str> {
    let mut rest = out;
    for s in shown {
        let at = rest.find(s).ok_or(*s)?;
        rest = &rest[at + s.len()..];
    }
    Ok(())
}

/// Runs every ```sh block of `page` in order, in one shell in a fresh folder, and checks what
/// they print: the ```json blocks that follow some, and `shown`, in order.
fn run_page(page: &str, shown: &[&str]) {
    let _turn = crate::helpers::busy_turn();
    let markdown = std::fs::read_to_string(root().join(page)).unwrap();
    let blocks = sh_blocks(&markdown);
    assert!(!blocks.is_empty(), "{page} has no sh example");
    for b in &blocks {
        for (i, l) in b.text.lines().enumerate() {
            assert!(
                !l.contains("6789") || l.starts_with(SETUP),
                "{page} line {}: an example names port 6789 instead of going through $BACKFILLD_BIND: {l}",
                b.line + 1 + i
            );
        }
    }
    let dir = fresh_folder();
    let mut script = PREAMBLE.to_string();
    for b in &blocks {
        script.push_str(&format!("echo '### {page} line {}'\n{}\n", b.line, b.text));
    }
    script.push_str("echo '### done'\n");
    // Quiet logs: the servers' lines would bury what the examples print.
    let quiet = [("RUST_LOG".to_string(), "warn".to_string())];
    let out = command_in(dir.path(), &free_address(), &quiet, &["bash", "-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().rev().find(|l| l.starts_with("### ")).unwrap_or("(none)");
    assert!(out.status.success(), "{page}'s examples failed after {last}:\n{stdout}\n{stderr}");
    assert!(stdout.ends_with("### done\n"), "{stdout}");
    for b in &blocks {
        let Some((json_line, json)) = &b.shows else { continue };
        let marker = format!("### {page} line {}\n", b.line);
        let printed = stdout.split_once(&marker).unwrap().1.split("\n### ").next().unwrap();
        let answer = printed.lines().rev().find(|l| l.trim_start().starts_with('{'));
        let answer = answer.unwrap_or_else(|| panic!("{page} line {}: printed no JSON:\n{printed}", b.line));
        let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{page} line {json_line}: not JSON: {e}"));
        assert_eq!(
            answer, json,
            "{page} line {json_line} shows another answer than the example at line {} gives",
            b.line
        );
    }
    if let Err(missing) = in_order(&stdout, shown) {
        panic!("{page}'s examples did not show {missing:?} (in its place):\n{stdout}\n{stderr}");
    }
}

fn page(name: &str) {
    let (page, shown) = PAGES.iter().find(|(p, _)| *p == name).unwrap();
    run_page(page, shown);
}

#[test]
fn the_readme_s_examples_run_in_order_as_written() {
    page("README.md");
}

#[test]
fn the_api_page_s_examples_run() {
    page("docs/api.md");
}

#[test]
fn the_workers_page_s_examples_run() {
    page("docs/workers.md");
}

#[test]
fn the_auth_page_s_examples_run() {
    page("docs/auth.md");
}

#[test]
fn the_operations_page_s_examples_run() {
    page("docs/operations.md");
}

/// A page with examples and no test would have examples that nobody runs.
#[test]
fn every_page_with_sh_examples_has_its_test() {
    let mut pages: Vec<String> = vec!["README.md".into()];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(format!("docs/{}", path.file_name().unwrap().to_string_lossy()));
        }
    }
    for p in pages {
        let has_examples = !sh_blocks(&std::fs::read_to_string(root().join(&p)).unwrap()).is_empty();
        assert_eq!(has_examples, PAGES.iter().any(|(name, _)| *name == p), "{p}: add it to PAGES, with a test");
    }
}

#[test]
fn blocks_are_found_with_their_lines_and_what_they_show() {
    let md = "a\n```sh\necho 1\n```\n```shell\nnot run\n```\n```sh\necho 2\necho 3\n```\n\n```json\n{\"a\": 1}\n```\n\
              ```sh\necho 4\n```\ntext\n```json\n{}\n```\n";
    assert_eq!(
        sh_blocks(md),
        vec![
            Block { line: 2, text: "echo 1\n".into(), shows: None },
            Block { line: 8, text: "echo 2\necho 3\n".into(), shows: Some((13, "{\"a\": 1}\n".into())) },
            Block { line: 16, text: "echo 4\n".into(), shows: None },
        ]
    );
}
