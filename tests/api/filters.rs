//! The backfill listing's filters (issue 21): `status=` (one status or several, comma-separated)
//! and `name_prefix=` (without case for ASCII letters), with `pipeline_uuid` and on a
//! pipeline's listing, counted in `metadata.count` and paged by `_cursor` and `_offset`,
//! against the unfiltered listing filtered here.

use serde_json::{json, Value};

use crate::helpers::{assert_error, ids, spawn_app, TestApp};

const STATUSES: [Option<&str>; 6] =
    [None, Some("initial"), Some("running"), Some("completed"), Some("failed"), Some("cancelled")];

/// `n` backfills (ids 1..=n) over pipelines p0..p2, named from `names` in turn with the id,
/// statuses in turn, created one second apart (ties every 7th, to exercise the id order).
fn records(n: i64, names: &[&str]) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            let mut r = json!({
                "id": i,
                "name": format!("{} {i}", names[i as usize % names.len()]),
                "pipeline_uuid": format!("p{}", i % 3),
                "created_at": format!("2023-01-01 {:02}:{:02}:{:02}", i / 3600, i / 60 % 60, (i - i % 7) % 60),
            });
            if let Some(status) = STATUSES[i as usize % STATUSES.len()] {
                r["status"] = json!(status);
            }
            r
        })
        .collect()
}

/// Every record of the unfiltered listing (in its order).
fn everything(app: &TestApp) -> Vec<Value> {
    let mut all = vec![];
    let mut cursor = String::new();
    loop {
        let r = app.get(&format!("/api/backfills?_limit=1000&_cursor={cursor}"));
        assert_eq!(r.status, 200, "{:?}", r.body);
        all.extend(r.body["backfills"].as_array().unwrap().iter().cloned());
        match r.body["metadata"]["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return all,
        }
    }
}

/// The ids of a filtered listing read page by page with `_cursor` (pages of `limit`),
/// checking each page's count; and the same with `_offset`.
fn paged(app: &TestApp, base: &str, limit: usize, count: usize) -> Vec<i64> {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut got = vec![];
    let mut cursor = String::new();
    loop {
        let r = app.get(&format!("{base}{sep}_limit={limit}&_cursor={cursor}"));
        assert_eq!(r.status, 200, "{base}: {:?}", r.body);
        assert_eq!(r.body["metadata"]["count"], count, "{base}");
        got.extend(ids(&r));
        match r.body["metadata"]["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut by_offset = vec![];
    for offset in (0..count.max(1)).step_by(limit) {
        let r = app.get(&format!("{base}{sep}_limit={limit}&_offset={offset}"));
        assert_eq!(r.body["metadata"]["count"], count, "{base}");
        by_offset.extend(ids(&r));
    }
    assert_eq!(by_offset, got, "{base}: _offset and _cursor pages differ");
    got
}

fn check(app: &TestApp, all: &[Value], query: &str, keep: impl Fn(&Value) -> bool) {
    let want: Vec<i64> = all.iter().filter(|b| keep(b)).map(|b| b["id"].as_i64().unwrap()).collect();
    for limit in [1000, 7] {
        assert_eq!(paged(app, &format!("/api/backfills?{query}"), limit, want.len()), want, "{query}");
    }
}

fn prefixed(b: &Value, prefix: &str) -> bool {
    b["name"].as_str().unwrap().to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase())
}

#[test]
fn each_filter_and_their_combinations_match_count_and_page_without_gaps() {
    let app = spawn_app();
    app.import(&json!({"backfills": records(120, &["Alpha", "alphabet", "ALPHA_2", "beta", "Ünïcode", "a%b"])}));
    let all = everything(&app);
    assert_eq!(all.len(), 120);
    let status = |b: &Value| b["status"].as_str().map(str::to_string);
    for s in ["initial", "running", "completed", "failed", "cancelled"] {
        check(&app, &all, &format!("status={s}"), |b| status(b).as_deref() == Some(s));
    }
    check(&app, &all, "status=failed,initial", |b| matches!(status(b).as_deref(), Some("failed" | "initial")));
    check(&app, &all, "status=%20running%20,running,,cancelled", |b| {
        matches!(status(b).as_deref(), Some("running" | "cancelled"))
    });
    check(&app, &all, "status=", |_| true);
    for prefix in ["alpha", "ALPHA", "Alpha_", "alphab", "b", "a%", "Ünï", "ünï", "zzz", "alpha 1"] {
        let q: String = prefix
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        check(&app, &all, &format!("name_prefix={q}"), |b| {
            // Without case for ASCII letters only, as documented.
            let (name, p) = (b["name"].as_str().unwrap(), prefix);
            name.len() >= p.len() && name.is_char_boundary(p.len()) && name[..p.len()].eq_ignore_ascii_case(p)
        });
    }
    check(&app, &all, "name_prefix=alpha&status=completed,failed&pipeline_uuid=p1", |b| {
        prefixed(b, "alpha")
            && matches!(status(b).as_deref(), Some("completed" | "failed"))
            && b["pipeline_uuid"] == "p1"
    });
    check(&app, &all, "status=initial&pipeline_uuid=p2", |b| {
        status(b).as_deref() == Some("initial") && b["pipeline_uuid"] == "p2"
    });
    // A pipeline's own listing takes them too.
    let want: Vec<i64> = all
        .iter()
        .filter(|b| b["pipeline_uuid"] == "p0" && prefixed(b, "beta") && status(b).is_some())
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    let base = "/api/pipelines/p0/backfills?name_prefix=Beta&status=initial,running,completed,failed,cancelled";
    assert_eq!(paged(&app, base, 4, want.len()), want);
    // Counts follow writes: a start moves a backfill into `initial`.
    let never: Vec<i64> =
        all.iter().filter(|b| status(b).is_none()).map(|b| b["id"].as_i64().unwrap()).take(1).collect();
    let before = app.get("/api/backfills?status=cancelled").body["metadata"]["count"].as_u64().unwrap();
    let r = app.send("PUT", &format!("/api/backfills/{}", never[0]), &json!({"backfill": {"status": "cancelled"}}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.get("/api/backfills?status=cancelled").body["metadata"]["count"], before + 1);
    assert_eq!(ids(&app.get("/api/backfills?status=cancelled&_limit=1000")).len() as u64, before + 1);
}

#[test]
fn a_prefix_matching_thousands_pages_as_one_matching_few() {
    let app = spawn_app();
    // More matches than the name index sorts (5,000): the listing's order is walked instead.
    app.import(&json!({"backfills": records(5200, &["bulk", "Bulk", "other"])}));
    let all = everything(&app);
    let status = |b: &Value| b["status"].as_str().map(str::to_string);
    check(&app, &all, "name_prefix=bul", |b| prefixed(b, "bul"));
    check(&app, &all, "name_prefix=bul&status=failed,running&pipeline_uuid=p1", |b| {
        prefixed(b, "bul") && matches!(status(b).as_deref(), Some("failed" | "running")) && b["pipeline_uuid"] == "p1"
    });
    check(&app, &all, "name_prefix=bulk%2051", |b| prefixed(b, "bulk 51"));
}

#[test]
fn an_unknown_status_is_a_400_naming_the_parameter() {
    let app = spawn_app();
    for q in ["status=done", "status=initial,done", "status=Initial"] {
        let message = assert_error(&app.get(&format!("/api/backfills?{q}")), 400, "api_resource_error");
        assert!(message.contains("status"), "{message}");
        assert_error(&app.get(&format!("/api/pipelines/p/backfills?{q}")), 400, "api_resource_error");
    }
}
