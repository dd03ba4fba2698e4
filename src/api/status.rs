//! `GET /api/status` (and Mage's other spelling, `/api/statuses`): a health check in Mage's
//! shape, `{"statuses": [{...}], "metadata": {}}`, that touches nothing (liveness); and
//! `GET /api/ready`, which writes (readiness).

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::{write, AppState};

/// `GET /api/ready`: whether the server can serve and write now. An empty write through the
/// writer thread, as every write goes: its batch takes the data file's write lock (`BEGIN
/// IMMEDIATE`) and commits, and is refused (503) when the lock cannot be had, the file was
/// deleted or replaced, or the writer's queue is full.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    write(state, |_, _| Ok(())).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ready": true})))
}

/// Answers without touching the database: the cheapest request the server can serve, which
/// the benchmark uses as its baseline. Mage's keys carry what is true of backfilld: no Mage
/// project (so no repo paths, project or instance type), no pipelines to edit, no per-user
/// permissions, and a dispatcher (claims and the lease sweep) running while the server
/// answers, which stands where Mage's scheduler does.
pub async fn get(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "statuses": [{
            "backfilld_version": env!("CARGO_PKG_VERSION"),
            "disable_pipeline_edit_access": true,
            "instance_type": null,
            "is_instance_manager": false,
            "max_print_output_lines": null,
            "project_type": null,
            "project_uuid": null,
            "repo_path": null,
            "repo_path_relative": null,
            "repo_path_relative_root": null,
            "repo_path_root": null,
            "require_user_authentication": state.auth.required,
            "require_user_permissions": false,
            "scheduler_status": "running",
        }],
        "metadata": {},
    }))
}
