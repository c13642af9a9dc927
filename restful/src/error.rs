//! The one error type of the server, and how each error is answered over HTTP.
//!
//! Messages never hold a secret, a password or a token: they name what was wrong and the fix.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type Result<T, E = RestError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// No bearer token on a route that needs one.
    #[error("Not authenticated")]
    NotAuthenticated,
    /// A bearer token that is malformed, forged, expired or names an unknown user.
    #[error("Could not validate credentials")]
    BadToken,
    /// A web page needs HTTP Basic credentials (browsers then prompt for them).
    #[error("{0}")]
    NeedBasic(String),
    /// A refused login at a token endpoint: 400, as OAuth2's invalid_grant (a 401 would make
    /// clients re-authenticate in a loop).
    #[error("{0}")]
    LoginRefused(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0:?} is not a valid job id (give it as Flux prints it: ƒ…, f…, decimal or 0x…)")]
    InvalidJobId(String),
    #[error("Job {0} not found")]
    JobNotFound(String),
    #[error("Page not found")]
    PageNotFound,
    /// Values that do not parse as their parameter's type: 422 with FastAPI's
    /// `{"detail": [{"type", "loc", "msg", "input"}]}`.
    #[error("Invalid request: {}", describe(.0))]
    Unprocessable(Vec<crate::params::FieldError>),
    /// Flux refused an action on a job; shown as Flux's Python bindings show it
    /// (`[Errno 2] unknown job id`), which is what flux-restful's messages quote.
    #[error("[Errno {errnum}] {message}")]
    Refused { errnum: u32, message: String },
    /// A submission without any command (flux-restful's first check, with its own shape).
    #[error("A 'command' is minimally required.")]
    MissingCommand,
    /// The submit parameters are not valid; every problem is listed.
    #[error("Invalid submit request: {}", .0.join("; "))]
    InvalidSubmit(Vec<String>),
    /// Flux (or the jobspec builder) refused the job.
    #[error("There was an issue submitting that job: {0}")]
    SubmitFailed(String),
    #[error(
        "too many submissions from {user}: the limit is {rate} per second (burst {burst}); retry after {retry_after}s"
    )]
    RateLimited {
        user: String,
        rate: f64,
        burst: u32,
        retry_after: u64,
    },
    #[error("request body is over the {limit}-byte limit")]
    TooLarge { limit: usize },
    /// Flux could not be reached or failed in a way the client cannot fix.
    #[error("Flux is unavailable: {0}")]
    FluxUnavailable(String),
    /// Startup configuration is unusable (never answered over HTTP).
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RestError::NotAuthenticated | RestError::BadToken | RestError::NeedBasic(_) => {
                StatusCode::UNAUTHORIZED
            }
            RestError::Forbidden(_) => StatusCode::FORBIDDEN,
            RestError::JobNotFound(_) | RestError::PageNotFound => StatusCode::NOT_FOUND,
            RestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            RestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RestError::FluxUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RestError::Config(_) | RestError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            RestError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RestError::LoginRefused(_)
            | RestError::Refused { .. }
            | RestError::BadRequest(_)
            | RestError::InvalidJobId(_)
            | RestError::InvalidSubmit(_)
            | RestError::MissingCommand
            | RestError::SubmitFailed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Map an error of the Flux client: "no such job" is the caller's problem (404), a refusal
    /// with a reason is 400, anything about the connection is 503.
    pub fn from_flux(e: flux_client::Error, id: impl std::fmt::Display) -> RestError {
        use flux_client::Error as F;
        match &e {
            F::Remote { errnum, .. } if *errnum == flux_client::error::errno::ENOENT => {
                RestError::JobNotFound(id.to_string())
            }
            F::Remote { message, .. } => {
                RestError::BadRequest(message.clone().unwrap_or_else(|| e.to_string()))
            }
            F::JobId { .. } => RestError::InvalidJobId(id.to_string()),
            F::Jobspec(m) => RestError::SubmitFailed(m.clone()),
            _ => RestError::FluxUnavailable(e.to_string()),
        }
    }
}

fn describe(errors: &[crate::params::FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.describe())
        .collect::<Vec<_>>()
        .join("; ")
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = match &self {
            RestError::Unprocessable(errors) => json!({ "detail": errors }),
            RestError::InvalidSubmit(errors) => {
                json!({"Message": "Invalid submit request", "Errors": errors})
            }
            RestError::MissingCommand => json!({"Message": self.to_string()}),
            RestError::SubmitFailed(e) => {
                json!({"Message": "There was an issue submitting that job.", "Error": e})
            }
            RestError::Config(_) | RestError::Io { .. } => {
                json!({"detail": "internal server error"})
            }
            other => json!({ "detail": other.to_string() }),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        match &self {
            RestError::NotAuthenticated | RestError::BadToken => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            RestError::NeedBasic(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"minicluster-rest\", charset=\"UTF-8\""),
                );
            }
            RestError::RateLimited { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        resp
    }
}
