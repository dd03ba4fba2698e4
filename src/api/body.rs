//! Request bodies: read with a size limit, parsed as JSON, the record object taken out, every
//! failure answered in the contract's envelope (actix's own extractors answer in plain text).

use actix_web::web::{self, Bytes};
use serde_json::Value;

use super::error::ApiError;
use crate::model::Object;

/// The largest body accepted: far above any real backfill, far below what would hurt.
pub const BODY_LIMIT: usize = 1 << 20;

pub async fn read(payload: web::Payload) -> Result<Bytes, ApiError> {
    match payload.to_bytes_limited(BODY_LIMIT).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("the request body could not be read: {e}"))),
        Err(_) => Err(ApiError::PayloadTooLarge(format!("the request body is larger than {BODY_LIMIT} bytes"))),
    }
}

/// The body's top-level JSON object.
pub fn object(bytes: &[u8]) -> Result<Object, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::BadRequest("the request body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))),
    }
}

/// The object under `key` (`{"backfill": {...}}`), which the request must carry.
pub async fn record(payload: web::Payload, key: &str) -> Result<Object, ApiError> {
    let bytes = read(payload).await?;
    match object(&bytes)?.remove(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(ApiError::BadRequest(format!("\"{key}\" in the request body must be an object"))),
        None => Err(ApiError::BadRequest(format!(
            "the request body must be {{\"{key}\": {{...}}}}, with the fields inside \"{key}\""
        ))),
    }
}
