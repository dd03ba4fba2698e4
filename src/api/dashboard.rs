//! The dashboard's static assets, compiled into the binary (src/dashboard/): `GET /` and
//! `/assets/...`, and the API's OpenAPI document. The page uses the API itself; nothing here
//! reads the database. The page carries the server's dashboard API key (`Page`), so it is
//! rendered once per server, at start.
//!
//! Each answer carries an `ETag` (the SHA-256 of the asset) and `Cache-Control: no-cache`,
//! so a browser asks again each time and gets a 304 without a body while the binary is the
//! same; and a Content-Security-Policy that lets the page load and fetch nothing from
//! another origin.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;

struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset { body: include_str!("../dashboard/index.html"), content_type: "text/html; charset=utf-8" };
const SCRIPT: Asset =
    Asset { body: include_str!("../dashboard/app.js"), content_type: "text/javascript; charset=utf-8" };
const STYLE: Asset = Asset { body: include_str!("../dashboard/app.css"), content_type: "text/css; charset=utf-8" };

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn etag(asset: &Asset, cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| digest_tag(asset.body))
}

fn serve(req: &HttpRequest, asset: &Asset, cell: &'static OnceLock<String>) -> HttpResponse {
    respond(req, etag(asset, cell), asset.content_type, asset.body)
}

fn respond(
    req: &HttpRequest,
    tag: &str,
    content_type: &'static str,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    let matches = super::fresh::if_none_match(req, tag) || super::fresh::if_none_match(req, "*");
    let mut answer = if matches { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    answer
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if matches {
        answer.finish()
    } else {
        answer.content_type(content_type).body(body)
    }
}

/// The dashboard's page as this server serves it: with `<meta name="backfilld-api-key">`
/// carrying the server's dashboard API key when it has one (the page's logins send it), so
/// rendered once at start, with its own `ETag`.
pub struct Page {
    body: String,
    tag: String,
}

impl Page {
    pub fn index(api_key: Option<&str>) -> Page {
        let mut body = INDEX.body.to_string();
        if let Some(key) = api_key {
            let meta = format!("\n<meta name=\"backfilld-api-key\" content=\"{}\">", attribute(key));
            let at = body.find("<meta charset=\"utf-8\">").map_or(0, |i| i + "<meta charset=\"utf-8\">".len());
            body.insert_str(at, &meta);
        }
        let tag = digest_tag(&body);
        Page { body, tag }
    }
}

/// `text` escaped for a double-quoted HTML attribute.
fn attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn digest_tag(body: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    format!("\"{}\"", crate::auth::token::hex(&digest[..16]))
}

pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let page = &state.index;
    respond(&req, &page.tag, INDEX.content_type, page.body.clone())
}

pub async fn script(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &SCRIPT, &TAG)
}

pub async fn style(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &STYLE, &TAG)
}

/// The OpenAPI 3.1 document of the whole API (`GET /api/openapi.json`), served like the
/// page's assets.
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &Asset { body: OPENAPI, content_type: "application/json" }, &TAG)
}
