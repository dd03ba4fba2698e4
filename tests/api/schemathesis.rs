//! Schemathesis (a property-based API tester, installed by `.ci/run` into `.venv`) against the
//! real binary with authentication on: it reads `GET /api/openapi.json`, generates requests
//! for every operation (valid ones and invalid ones), follows the document's links from
//! created backfills and claimed runs to their reads, updates and deletes, and checks every
//! answer: no server error, and status, content type, headers and body as documented.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cli::{run, serve_with};

/// The committed document is what its generator (`tools/openapi.py`) makes.
#[test]
fn the_openapi_document_is_what_its_generator_makes() {
    let Ok(out) =
        Command::new("python3").arg("tools/openapi.py").arg("-").current_dir(env!("CARGO_MANIFEST_DIR")).output()
    else {
        crate::skip::skip("no python3 to run tools/openapi.py");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/api/openapi.json")).unwrap();
    assert!(
        out.stdout == committed,
        "src/api/openapi.json is not what tools/openapi.py makes: run `python3 tools/openapi.py src/api/openapi.json`"
    );
}

/// `.venv/bin/st`, when `.ci/run` (or the README's command) has installed it.
fn schemathesis() -> Option<PathBuf> {
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/st");
    if st.is_file() {
        return Some(st);
    }
    crate::skip::skip(
        "no .venv/bin/st (install schemathesis: `python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt`)",
    );
    None
}

const KEY: &str = "schemathesis-key";

#[test]
fn schemathesis_finds_every_answer_as_documented() {
    let Some(st) = schemathesis() else { return };
    let _turn = crate::helpers::busy_turn();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("st.db");
    let token = run(&["token", "create", "--name", "st"], &db);
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    // Small starts: schemathesis makes many backfills.
    let server = serve_with(&db, &["--workers", "2", "--require-auth", "--api-key", KEY, "--max-runs", "500"], &[]);
    let report = dir.path().join("report");
    // Every check but positive_data_acceptance ("a request the document allows gets a 2xx"):
    // the API has rules across fields and state that a schema cannot say (an end before the
    // start, `_cursor` with `_offset`, starting a backfill without dates, logging out with a
    // token that is not a session's), each a 400 that the document lists.
    let out = Command::new(&st)
        .current_dir(dir.path())
        .args(["run", &format!("{}/api/openapi.json", server.base)])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        // One worker: with two, its threads parse Python sources at once (hypothesis reads a
        // lambda's source to describe it), and Python 3.11's parser keeps one recursion count
        // for all threads: "AST constructor recursion depth mismatch", a runtime error.
        .args(["--max-examples", "80", "--seed", "7", "--workers", "1", "--no-shrink"])
        .args(["--header", &format!("X-API-KEY: {KEY}"), "--header", &format!("OAUTH-TOKEN: {token}")])
        .args(["--request-timeout", "20", "--report", "ndjson", "--report-dir"])
        .arg(&report)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text.lines().filter(|l| l.contains("generated") || l.contains("passed")).collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(out.status.success(), "schemathesis failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
}
