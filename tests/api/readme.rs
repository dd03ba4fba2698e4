//! The documentation's examples, run as a reader would: every ```sh block of README.md and of
//! each page of docs/, in order and as written, one shell per page in a fresh folder, with
//! the built binary as `backfilld` and `BACKFILLD_BIND` set to a free port (the examples name
//! the server's address through it alone, so they need no particular port); and the `run:`
//! steps of examples/github-actions.yml, as GitHub runs them. Blocks fenced ```shell install,
//! build, benchmark or serve in the foreground, and are not run.
//!
//! `curl` is wrapped to fail the run on a 404 or a 5xx answer (an example naming a record
//! that does not exist, or breaking the server) and on a refused connection; other refusals
//! (400, 401, 409) are what some examples show. A ```json block right after a ```sh block
//! shows what that block prints: the last line of its output that is a JSON object must be
//! the same JSON. What else each page's examples show is checked, in order, after the run.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::helpers::BIN;

/// The pages whose examples run, each with what its output must show, in this order.
const PAGES: [(&str, &[&str]); 7] = [
    (
        "README.md",
        &[
            "created backfill 1 (25 runs), started",
            "etl 2023-03-01 | loading 2023-03-01 00:00",
            "etl 2023-03-05 | loading 2023-03-05 00:00",
            "25 runs: 25 completed",
            "status      completed",
            "imported 1 backfill(s)",
            "etl 2024-01-02 | loading 2024-01-02",
            "3 runs: 2 completed, 1 failed",
            "the worker exited 1",
            "status      failed",
            "the command exited with status 1",
            "loading 2024-01-02",
            "run 4 runs the date 2024-01-02 00:00 of run 2 again",
            "1 run: 1 completed",
            "status      completed",
        ],
    ),
    (
        "docs/api.md",
        &[
            "\"name\":\"sparkling glitter\"",
            "\"total_run_count\":366",
            "\"pipeline_run_dates\":[",
            "\"name\":\"sparkling glitter, EU only\"",
            "\"status\":\"initial\"",
            "\"status\":\"cancelled\"",
            "\"pipeline_runs\":[",
            "\"status\":\"running\"",
            "\"pipeline_run_log\":{\"cut\":0",
            "loading 2024-01-01",
            "\n2024-01-01\n",
            "\"backfilld_version\"",
        ],
    ),
    (
        "docs/workers.md",
        &[
            "\"lease_expires_at\"",
            "loading 2024-01-01",
            "the lease of worker 'w1' on pipeline run 2 expired",
            "\"is_paused\":true",
            "\"attempt\":2",
            "3 runs: 3 completed",
            "loading 2024-01-01",
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
    (
        "docs/cli.md",
        &[
            "73 runs of pipeline etl (dry run: nothing was created)",
            "... 33 more ...",
            "created backfill 1 (3 runs), started",
            "the worker exited 1",
            "three days",
            "failed dates: 1",
            "the command exited with status 1",
            "(attempt 2)",
            "deleted backfill 1",
            "exit status 1",
            "exit status 2",
            "exit status 1",
            "logged in to http://",
            "no backfills",
            "logged out of http://",
        ],
    ),
    ("docs/ci.md", &["exported 1 backfill(s) and 25 pipeline run(s)", "imported 1 backfill(s) and 25 pipeline run(s)"]),
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
    // `backfilld login` keeps its credentials in the folder, never in the real home.
    cmd.env("HOME", dir).env("XDG_CONFIG_HOME", dir.join(".config"));
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
    // Standard error with standard output, in order, as a terminal shows both: the worker
    // shows its commands' output on standard error.
    let mut script = format!("exec 2>&1\n{PREAMBLE}");
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

#[test]
fn the_command_line_page_s_examples_run() {
    page("docs/cli.md");
}

#[test]
fn the_ci_page_s_examples_run() {
    page("docs/ci.md");
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

/// What backfilld's tests read of a GitHub Actions workflow: its top-level `env`, and its one
/// job's steps. The shape is kept simple on purpose, and anything outside it is refused, so
/// that the steps run here are the steps GitHub runs.
#[derive(Debug, Default, PartialEq)]
struct Workflow {
    env: Vec<(String, String)>,
    shell: Option<String>,
    steps: Vec<Step>,
}

#[derive(Debug, Default, PartialEq)]
struct Step {
    line: usize,
    name: Option<String>,
    uses: Option<String>,
    condition: Option<String>,
    run: Option<String>,
    /// Marked with a comment "not run by backfilld's tests".
    skipped_here: bool,
}

/// The marker of a step the tests skip: one that installs backfilld.
const NOT_RUN_HERE: &str = "# not run by backfilld's tests";

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A plain or quoted YAML scalar on one line.
fn scalar(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// Reads the workflow: top-level `name`, `on`, `env` (one `KEY: value` a line), `defaults`
/// (`run: shell: ...`) and `jobs` with one job (`runs-on`, `steps`); each step's `name`, `id`,
/// `uses`, `with` (skipped), `if` and `run` (one line, or a `|` block). Panics on anything
/// else, naming the line.
fn workflow(yaml: &str) -> Workflow {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut wf = Workflow::default();
    let content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let mut i = 0;
    let mut section = "";
    let mut steps_indent = None;
    while i < lines.len() {
        let line = lines[i];
        let n = i + 1;
        i += 1;
        if !content(line) {
            if line.trim_start().starts_with(NOT_RUN_HERE) {
                let step = wf.steps.last_mut().unwrap_or_else(|| panic!("line {n}: a marker outside a step"));
                step.skipped_here = true;
            }
            continue;
        }
        let ind = indent(line);
        let text = line.trim();
        if ind == 0 {
            let (key, value) = text.split_once(':').unwrap_or_else(|| panic!("line {n}: {line}"));
            section = match key {
                "name" | "on" => "",
                "env" | "defaults" | "jobs" => key,
                _ => panic!("line {n}: the tests do not read a top-level `{key}`"),
            };
            assert!(section.is_empty() || value.trim().is_empty(), "line {n}: {line}");
            continue;
        }
        match section {
            "env" => {
                assert_eq!(ind, 2, "line {n}: {line}");
                let (k, v) = text.split_once(':').unwrap_or_else(|| panic!("line {n}: {line}"));
                assert!(!v.contains("${{"), "line {n}: the tests do not evaluate expressions");
                wf.env.push((k.to_string(), scalar(v)));
            }
            "defaults" => match (ind, text) {
                (2, "run:") => {}
                (4, _) if text.starts_with("shell:") => wf.shell = Some(scalar(&text["shell:".len()..])),
                _ => panic!("line {n}: the tests read only `defaults: run: shell:`"),
            },
            "jobs" => {
                if let Some(si) = steps_indent {
                    if let Some(first) = text.strip_prefix("- ") {
                        assert_eq!(ind, si, "line {n}: {line}");
                        wf.steps.push(Step { line: n, ..Step::default() });
                        i = step_key(&lines, i - 1, ind + 2, first, wf.steps.last_mut().unwrap());
                    } else {
                        assert_eq!(ind, si + 2, "line {n}: a step's key where the tests do not expect one: {line}");
                        i = step_key(&lines, i - 1, ind, text, wf.steps.last_mut().unwrap());
                    }
                } else {
                    match (ind, text) {
                        (2, _) if text.ends_with(':') => assert!(wf.steps.is_empty(), "line {n}: one job only"),
                        (4, _) if text.starts_with("runs-on:") => {}
                        (4, "steps:") => steps_indent = Some(6),
                        _ => panic!("line {n}: the tests do not read {line}"),
                    }
                }
            }
            _ => panic!("line {n}: {line}"),
        }
    }
    wf
}

/// Reads the step key `text` at line index `at` (keys of this step at `key_indent`), and what
/// belongs to it on the following lines; returns the index of the next line to read.
fn step_key(lines: &[&str], at: usize, key_indent: usize, text: &str, step: &mut Step) -> usize {
    let n = at + 1;
    let (key, value) = text.split_once(':').unwrap_or_else(|| panic!("line {n}: {text}"));
    let value = value.trim();
    // The lines after, more indented than the key: a `|` block or a `with` map.
    let mut end = at + 1;
    while end < lines.len() && (lines[end].trim().is_empty() || indent(lines[end]) > key_indent) {
        end += 1;
    }
    while end > at + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let nested = &lines[at + 1..end];
    match key {
        "name" => step.name = Some(scalar(value)),
        "id" => {}
        "uses" => step.uses = Some(scalar(value)),
        "with" => assert!(value.is_empty(), "line {n}: {text}"),
        "if" => step.condition = Some(value.to_string()),
        "run" if value == "|" => {
            let strip = nested.iter().find(|l| !l.trim().is_empty()).map_or(0, |l| indent(l));
            let body: Vec<&str> = nested.iter().map(|l| l.get(strip..).unwrap_or("")).collect();
            step.run = Some(body.join("\n") + "\n");
        }
        "run" if !value.starts_with(['|', '>', '"', '\'']) => step.run = Some(format!("{value}\n")),
        _ => panic!("line {n}: the tests do not read a step's `{key}: {value}`"),
    }
    if key != "with" && !(key == "run" && value == "|") {
        assert!(nested.iter().all(|l| !l.trim_start().starts_with(|c: char| c != '#')), "line {n}: {text}");
        return at + 1;
    }
    end
}

#[test]
fn a_workflow_s_steps_are_read_as_github_reads_them() {
    let yaml = "name: x\non: [push]\nenv:\n  A: 1\n  B: \"two\"\ndefaults:\n  run:\n    shell: bash\njobs:\n  j:\n    \
                runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n\n      - name: Get\n        \
                # not run by backfilld's tests\n        run: echo get\n      - name: Two lines\n        if: always()\n        \
                run: |\n          echo a\n            indented\n\n          echo b\n\n      - name: Cached\n        \
                uses: actions/cache@v4\n        with:\n          path: x\n";
    let wf = workflow(yaml);
    assert_eq!(wf.env, [("A".to_string(), "1".to_string()), ("B".to_string(), "two".to_string())]);
    assert_eq!(wf.shell.as_deref(), Some("bash"));
    let got: Vec<_> = wf
        .steps
        .iter()
        .map(|s| {
            (s.line, s.name.as_deref(), s.uses.as_deref(), s.condition.as_deref(), s.run.as_deref(), s.skipped_here)
        })
        .collect();
    assert_eq!(
        got,
        [
            (13, None, Some("actions/checkout@v4"), None, None, false),
            (15, Some("Get"), None, None, Some("echo get\n"), true),
            (18, Some("Two lines"), None, Some("always()"), Some("echo a\n  indented\n\necho b\n"), false),
            (26, Some("Cached"), Some("actions/cache@v4"), None, None, false),
        ]
    );
    for bad in [
        "concurrency: x\n",
        "jobs:\n  j:\n    steps:\n      - run: >\n          folded\n",
        "jobs:\n  j:\n    steps:\n      - shell: sh\n",
        "jobs:\n  j:\n    steps:\n      - env:\n          A: 1\n",
        "env:\n  A: ${{ github.sha }}\n",
    ] {
        assert!(std::panic::catch_unwind(|| workflow(bad)).is_err(), "{bad}");
    }
}

/// The CI recipe, examples/github-actions.yml, run as GitHub runs it: each `run:` step in
/// order, in a shell of its own (`bash --noprofile --norc -eo pipefail`, GitHub's `shell:
/// bash`), in one folder, with the workflow's `env`; the steps after a failure only when
/// their `if` says `always()` or `failure()`. Actions (`uses:`) and the steps marked as not
/// run here (those that fetch and build backfilld) are skipped: the built binary is on the
/// PATH instead. The fixture is backfilld's examples/ci-fixture.json.
#[test]
fn the_github_actions_recipe_runs() {
    let _turn = crate::helpers::busy_turn();
    let wf = workflow(&std::fs::read_to_string(root().join("examples/github-actions.yml")).unwrap());
    assert_eq!(wf.shell.as_deref(), Some("bash"), "the tests run the steps as `shell: bash` does");
    let env: BTreeMap<&str, &str> = wf.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(env.contains_key("BACKFILLD_BIND"), "the workflow sets where backfilld serves");
    let skipped: Vec<&str> = wf.steps.iter().filter(|s| s.skipped_here).filter_map(|s| s.run.as_deref()).collect();
    assert!(skipped.iter().all(|r| r.contains("backfilld") || r.contains("BACKFILLD")), "{skipped:?}");
    let dir = fresh_folder();
    let fixtures: PathBuf = dir.path().join("tests/fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    std::fs::copy(root().join("examples/ci-fixture.json"), fixtures.join("backfills.json")).unwrap();
    let bind = free_address();
    let mut failed: Option<(String, Output)> = None;
    let mut log = String::new();
    let mut ran = 0;
    for step in &wf.steps {
        let Some(run) = step.run.as_deref().filter(|_| !step.skipped_here) else { continue };
        assert!(!run.contains("${{"), "line {}: the tests do not evaluate expressions", step.line);
        let runs = match step.condition.as_deref() {
            None => failed.is_none(),
            Some("always()") => true,
            Some("failure()") => failed.is_some(),
            Some(other) => panic!("line {}: the tests do not evaluate `if: {other}`", step.line),
        };
        if !runs {
            continue;
        }
        let name = step.name.clone().unwrap_or_else(|| format!("line {}", step.line));
        let out =
            command_in(dir.path(), &bind, &wf.env, &["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", run])
                .output()
                .unwrap();
        ran += 1;
        log.push_str(&format!(
            "### {name}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        if !out.status.success() && failed.is_none() {
            failed = Some((name, out));
        }
    }
    // A server a failed step left behind.
    let pid = std::fs::read_to_string(dir.path().join("backfilld.pid")).unwrap_or_default();
    if let Ok(pid) = pid.trim().parse::<i32>() {
        let _ = Command::new("kill").arg(pid.to_string()).stderr(Stdio::null()).status();
    }
    if let Some((name, out)) = failed {
        panic!("the workflow's step {name:?} failed ({}):\n{log}", out.status);
    }
    assert!(ran >= 5, "{ran} steps ran:\n{log}");
    let shown = ["25 runs: 21 completed, 4 failed", "the client's tests passed", "stopped"];
    if let Err(missing) = in_order(&log, &shown) {
        panic!("the workflow did not show {missing:?} (in its place):\n{log}");
    }
}
