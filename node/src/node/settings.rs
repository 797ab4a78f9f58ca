//! The node's configuration through the control API: shown, and the values a running
//! node can change applied at once and saved to `config.toml`.

use std::sync::atomic::Ordering;

use super::{errors::Reply, Node};
use crate::{
    api::{ApiError, LiveSettings, NodeSettings, Response},
    config::{self, Config, ConfigError},
    store::BlobLimits,
};

impl Node {
    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.inner.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration as the node runs it now.
    pub(super) fn settings(&self) -> Reply {
        let config = self.config();
        Ok(Response::Settings(Box::new(NodeSettings {
            live: config.live(),
            restart: config.fixed(),
            path: self.inner.config_path.display().to_string(),
        })))
    }

    /// Saves the changes of `set` to `config.toml` (checked as at start: a bad value
    /// changes nothing), then applies the saved file's live values to the running node.
    pub(super) async fn settings_set(&self, set: LiveSettings) -> Reply {
        // One change at a time: each reads the file the one before wrote.
        let _one = self.inner.settings_lock.lock().await;
        let path = self.inner.config_path.clone();
        let saved = tokio::task::spawn_blocking(move || config::live::save(&path, &set))
            .await
            .map_err(|e| ApiError::internal(format!("saving the settings failed: {e}")))?
            .map_err(|e| match e {
                ConfigError::Read { .. } | ConfigError::Write { .. } => {
                    ApiError::internal(e.to_string())
                }
                _ => ApiError::invalid(e.to_string()),
            })?;
        let before = self.config().live();
        let mib = |n: u64| n.saturating_mul(1 << 20);
        let limits = BlobLimits {
            max_blob: mib(saved.blobs.max_blob_mb),
            quota: mib(saved.blobs.blob_quota_mb),
            auto_budget: mib(saved.blobs.thumbnail_budget_mb),
        };
        let blobs = self.inner.blobs.clone();
        match tokio::task::spawn_blocking(move || blobs.set_limits(limits)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "evicting blobs for a smaller quota failed"),
            Err(error) => tracing::warn!(%error, "evicting blobs for a smaller quota failed"),
        }
        self.inner.blob.set_upload_rate(saved.blobs.blob_upload_kib_s.saturating_mul(1024));
        self.inner.net.set_limits(saved.limits).await;
        self.inner.dht_tags.store(saved.dht_tags, Ordering::SeqCst);
        if before.dht_tags != Some(saved.dht_tags) {
            self.drive(crate::core::Input::DhtTags(saved.dht_tags)).await;
        }
        self.config().adopt_live(&saved);
        tracing::info!(settings = ?self.config().live(), "settings changed");
        self.settings()
    }
}
