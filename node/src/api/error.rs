//! Why a control request failed: a kind a program can act on, and one line for a person.

use serde::{Deserialize, Serialize};

/// What kind of failure a control request met. The CLI maps kinds to exit statuses and
/// prints the kind with `--json`; tests match kinds instead of message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range (a bad hashtag, an empty post,
    /// a limit of 0, a record id that is not hex).
    Invalid,
    /// A person or record the request names is not known to this node.
    NotFound,
    /// A name, id tail or record prefix matches more than one person or record.
    Ambiguous,
    /// The request is well formed but not allowed (deleting someone else's record,
    /// blocking oneself, a recipient that refused a message, another user's connection).
    /// Also what an answer without a kind (from an older daemon) reads as.
    #[default]
    Refused,
    /// A direct message to someone who is not a mutual connection.
    NotMutual,
    /// The network or a part of the daemon cannot do it now (a failed dial, a network task
    /// that stopped, a feature switched off); trying again later may work.
    Unavailable,
    /// The node itself failed (the store or the disk): not the request's fault.
    Internal,
}

impl ErrorKind {
    /// The kind as written in JSON (`not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::Ambiguous => "ambiguous",
            Self::Refused => "refused",
            Self::NotMutual => "not_mutual",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed control request: its kind and one line saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// One line for a person.
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// [`ErrorKind::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Refused`].
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }

    /// [`ErrorKind::NotMutual`].
    pub fn not_mutual(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotMutual, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<ApiError> for super::Response {
    fn from(e: ApiError) -> Self {
        Self::Error { message: e.message, kind: e.kind }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::api::Response;

    #[test]
    fn errors_travel_with_their_kind() {
        let reply: Response = ApiError::not_found("unknown record 00000000").into();
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "reply": "error", "message": "unknown record 00000000", "kind": "not_found"
            })
        );
        assert_eq!(serde_json::from_value::<Response>(json).unwrap(), reply);
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Ambiguous,
            ErrorKind::Refused,
            ErrorKind::NotMutual,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            let text = serde_json::to_value(kind).unwrap();
            assert_eq!(text, kind.as_str());
        }
        // An answer from a daemon that sent no kind reads as a refusal.
        let old: Response = serde_json::from_str(r#"{"reply":"error","message":"no"}"#).unwrap();
        assert_eq!(old, Response::Error { message: "no".into(), kind: ErrorKind::Refused });
    }
}
