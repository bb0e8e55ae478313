//! The bearer token: none needed on loopback unless one is given; required on any other
//! address, where one is generated (and kept, 0600, in the data folder) when none is given.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ServeConfig;
use crate::error::{ApiError, ServeError};
use crate::state::ServerState;

/// Where a generated token is kept, in the data folder.
pub const TOKEN_FILE_NAME: &str = "server-token";

pub struct Token {
    /// What requests must carry; `None` lets every request in (loopback only).
    pub token: Option<String>,
    /// A token made at this start, to print once.
    pub generated: Option<String>,
}

pub fn resolve_token(config: &ServeConfig, local: SocketAddr) -> Result<Token, ServeError> {
    if let Some(path) = &config.token_file
        && path.exists()
    {
        return Ok(Token {
            token: Some(read_token(path)?),
            generated: None,
        });
    }
    if local.ip().is_loopback() && config.token_file.is_none() {
        return Ok(Token {
            token: None,
            generated: None,
        });
    }
    let path = config
        .token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(TOKEN_FILE_NAME));
    if path.exists() {
        return Ok(Token {
            token: Some(read_token(&path)?),
            generated: None,
        });
    }
    let token = new_token();
    write_private(&path, &token).map_err(|source| ServeError::WriteToken {
        path: path.clone(),
        source,
    })?;
    Ok(Token {
        token: Some(token.clone()),
        generated: Some(token),
    })
}

fn read_token(path: &Path) -> Result<String, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::ReadToken {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(ServeError::EmptyToken {
            path: path.to_owned(),
        });
    }
    Ok(token)
}

/// 256 random bits, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{token}")?;
    file.sync_all()
}

/// Lets a request through when it carries the token (or none is needed).
pub async fn require_token(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if same(given.as_bytes(), expected.as_bytes()) => next.run(request).await,
        Some(_) => unauthorized("the token is wrong"),
        None => unauthorized(
            "this server needs a token: send the header “Authorization: Bearer <token>” (the token was printed when the server first started, and is in its data folder)",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
