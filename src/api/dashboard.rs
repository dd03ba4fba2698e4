//! The dashboard's static assets, compiled into the binary (src/dashboard/): `GET /` and
//! `/assets/...`, and the API's OpenAPI document. The page uses the API itself; nothing here
//! reads the database.
//!
//! Each answer carries an `ETag` (the SHA-256 of the asset) and `Cache-Control: no-cache`,
//! so a browser asks again each time and gets a 304 without a body while the binary is the
//! same; and a Content-Security-Policy that lets the page load and fetch nothing from
//! another origin.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

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
    cell.get_or_init(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(asset.body);
        format!("\"{}\"", crate::auth::token::hex(&digest[..16]))
    })
}

fn serve(req: &HttpRequest, asset: &Asset, cell: &'static OnceLock<String>) -> HttpResponse {
    let tag = etag(asset, cell);
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
        answer.content_type(asset.content_type).body(asset.body)
    }
}

pub async fn index(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &INDEX, &TAG)
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
