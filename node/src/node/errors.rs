//! Control request failures: how the node's own errors become [`ApiError`]s with a kind.

use crate::{
    api::{ApiError, Response},
    net::NetError,
    resolve::ResolveError,
    store::StoreError,
};

/// The answer to a control request.
pub(super) type Reply = Result<Response, ApiError>;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(format!("store: {e}"))
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        let message = e.to_string();
        match e {
            ResolveError::Invalid(_) => ApiError::invalid(message),
            ResolveError::Unknown(_) => ApiError::not_found(message),
            ResolveError::Ambiguous { .. } => {
                ApiError::new(crate::api::ErrorKind::Ambiguous, message)
            }
            ResolveError::Store(_) => ApiError::internal(message),
        }
    }
}

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}
