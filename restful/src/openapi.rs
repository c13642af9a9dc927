//! The OpenAPI document (generated from the handlers' types) and a docs page rendered from it.

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::Value;
use utoipa::OpenApi;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};

use crate::api;
use crate::server::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "minicluster-rest",
        description = "The flux-restful-api HTTP API, served on the native Flux client. flux-restful-client works against it unchanged."
    ),
    paths(
        api::auth_info,
        api::token,
        api::login_access_token,
        api::service_stop,
        api::list_jobs,
        api::search_jobs,
        api::list_nodes,
        api::submit_job,
        api::get_job,
        api::cancel_job,
        api::job_output,
        api::job_output_stream,
    ),
    components(schemas(
        api::Detail,
        api::AuthInfo,
        api::TokenResponse,
        api::LoginForm,
        api::NodesResponse,
        api::SubmitResponse,
        api::InvalidSubmit,
        api::CancelResponse,
        api::OutputResponse,
        api::JobDetails,
        api::JobsResponse,
        api::SearchResponse,
        crate::params::FieldError,
        crate::params::ValidationErrors,
    )),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "jobs", description = "Jobs and nodes"),
        (name = "service", description = "The server itself"),
    )
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                "/v1/login/access-token",
                Scopes::new(),
            ))])),
        );
    }
}

/// The document as JSON.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { axum::Json(document()) }))
        .route("/docs", get(docs_page))
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn schema_text(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if let Some(t) = s["type"].as_str() {
        if t == "array" {
            return format!("array of {}", schema_text(&s["items"]));
        }
        return t.to_string();
    }
    if let Some(t) = s["type"].as_array() {
        return t
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(one) = s["oneOf"].as_array() {
        return one.iter().map(schema_text).collect::<Vec<_>>().join(" | ");
    }
    "object".into()
}

/// A page listing every operation: method, path, summary, parameters and responses.
pub fn render_docs(doc: &Value) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>minicluster-rest API</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
         code{background:#eee;padding:0 .2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
         .m{font-weight:bold;text-transform:uppercase}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>{}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}).</p>",
        escape(doc["info"]["title"].as_str().unwrap_or("API")),
        escape(doc["info"]["description"].as_str().unwrap_or("")),
        escape(doc["openapi"].as_str().unwrap_or("3"))
    ));
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                html.push_str(&format!(
                    "<h2 id=\"{}\"><span class=\"m\">{}</span> <code>{}</code></h2>",
                    escape(op["operationId"].as_str().unwrap_or("")),
                    escape(method),
                    escape(path)
                ));
                if let Some(s) = op["summary"].as_str() {
                    html.push_str(&format!("<p>{}</p>", escape(s)));
                }
                if let Some(d) = op["description"].as_str() {
                    html.push_str(&format!("<p>{}</p>", escape(d)));
                }
                if op.get("security").is_some() {
                    html.push_str("<p><em>Needs a bearer token (unless the server runs without auth).</em></p>");
                }
                if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                    html.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>");
                    for p in params {
                        html.push_str(&format!(
                            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            escape(p["name"].as_str().unwrap_or("")),
                            if p["required"] == true {
                                " (required)"
                            } else {
                                ""
                            },
                            escape(p["in"].as_str().unwrap_or("")),
                            escape(&schema_text(&p["schema"])),
                            escape(p["description"].as_str().unwrap_or(""))
                        ));
                    }
                    html.push_str("</table>");
                }
                if let Some(rs) = op["responses"].as_object() {
                    html.push_str("<ul>");
                    for (code, r) in rs {
                        html.push_str(&format!(
                            "<li><b>{}</b> {}</li>",
                            escape(code),
                            escape(r["description"].as_str().unwrap_or(""))
                        ));
                    }
                    html.push_str("</ul>");
                }
            }
        }
    }
    html.push_str("</body></html>");
    html
}

async fn docs_page() -> impl IntoResponse {
    Html(render_docs(&document()))
}
