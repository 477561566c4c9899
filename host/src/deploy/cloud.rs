//! The cloud's deployment buckets, as both sides use them: the operator's
//! CLI writes bundles and desired sets and reads reports; a device reads
//! bundles and desired sets and writes its report. Through a leaf node, a
//! device reaches them in the cloud's JetStream domain.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::model::{
    BUNDLES_BUCKET, DESIRED_BUCKET, Desired, DesiredPlugin, MAX_DOCUMENT_BYTES, REPORTED_BUCKET, Reported, bundle_name,
    digest_of_name,
};

/// A failure to reach or use the deployment buckets.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// A NATS or JetStream operation failed.
    #[error("{what}: {source}")]
    Nats {
        /// What was being done.
        what: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Someone else wrote the key since it was read: nothing was overwritten.
    #[error(
        "`{key}` changed while this was being written (generation {read} was read; someone else wrote since): nothing was overwritten; read it again and retry"
    )]
    Conflict {
        /// The key.
        key: String,
        /// The generation read.
        read: u64,
    },
    /// A bundle object is not what its name promises.
    #[error("bundle `{name}`: {reason}")]
    Bundle {
        /// Its object name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The bucket does not exist in that JetStream: nothing was pushed to
    /// this cloud yet (`push` and `rollout` create the buckets), or the
    /// JetStream reached is not the cloud's (another domain). Readers take
    /// it for "nothing there"; anything else that fails to open a bucket (no
    /// JetStream, no permission, no answer) stays a [`CloudError::Nats`].
    #[error(
        "there is no bucket {bucket}: nothing has been pushed to this cloud yet (or this JetStream is not the cloud's: check the domain)"
    )]
    NoBucket {
        /// The bucket's name.
        bucket: String,
    },
    /// A stored document does not parse.
    #[error("`{key}` holds no valid document: {reason}")]
    Document {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn nats(what: impl Into<String>) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> CloudError {
    let what = what.into();
    move |source| CloudError::Nats { what, source }
}

/// The deployment buckets of one cloud.
#[derive(Clone)]
pub struct Cloud {
    js: jetstream::Context,
}

impl Cloud {
    /// The buckets reached through `client`: in JetStream domain `domain`
    /// (a device behind a leaf node), or the server's own.
    pub fn new(client: async_nats::Client, domain: Option<&str>) -> Cloud {
        let js = match domain {
            Some(domain) => jetstream::with_domain(client, domain),
            None => jetstream::new(client),
        };
        Cloud { js }
    }

    /// The JetStream context the buckets are reached through (the
    /// dashboard reads the upstream streams of the same domain with it).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Create the buckets that do not exist yet (the operator's side).
    pub async fn ensure_buckets(&self) -> Result<(), CloudError> {
        if self.js.get_object_store(BUNDLES_BUCKET).await.is_err() {
            self.js
                .create_object_store(object_store::Config {
                    bucket: BUNDLES_BUCKET.to_owned(),
                    description: Some("Edgewise bundles, named by digest".to_owned()),
                    ..Default::default()
                })
                .await
                .map_err(|e| nats("cannot create the bundle bucket")(Box::new(e)))?;
        }
        for (bucket, history, description) in [
            (DESIRED_BUCKET, 16, "Edgewise desired plugin sets, by device and group"),
            (REPORTED_BUCKET, 1, "Edgewise reported state, by device"),
        ] {
            if self.js.get_key_value(bucket).await.is_err() {
                self.js
                    .create_key_value(kv::Config {
                        bucket: bucket.to_owned(),
                        description: description.to_owned(),
                        history,
                        max_value_size: MAX_DOCUMENT_BYTES as i32,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| nats(format!("cannot create the bucket {bucket}"))(Box::new(e)))?;
            }
        }
        Ok(())
    }

    async fn kv(&self, bucket: &str) -> Result<kv::Store, CloudError> {
        self.js.get_key_value(bucket).await.map_err(|e| open_error(bucket, e))
    }

    async fn bundles(&self) -> Result<object_store::ObjectStore, CloudError> {
        self.js
            .get_object_store(BUNDLES_BUCKET)
            .await
            .map_err(|e| open_error(BUNDLES_BUCKET, e))
    }

    /// Store a bundle under its digest (once: an object of that name is
    /// that bundle already); its object name.
    pub async fn put_bundle(&self, bundle: &[u8]) -> Result<String, CloudError> {
        let name = bundle_name(bundle);
        let store = self.bundles().await?;
        if store.info(&name).await.is_ok_and(|info| !info.deleted) {
            return Ok(name);
        }
        let mut reader = bundle;
        store
            .put(name.as_str(), &mut reader)
            .await
            .map_err(|e| nats(format!("cannot store bundle {name}"))(Box::new(e)))?;
        Ok(name)
    }

    /// Fetch the bundle `name`: at most `max_bytes` (a larger one is refused
    /// before it is read), and only if its bytes have the digest its name
    /// says, whatever the store claims.
    pub async fn fetch_bundle(&self, name: &str, max_bytes: u64) -> Result<Vec<u8>, CloudError> {
        let refuse = |reason: String| CloudError::Bundle {
            name: name.to_owned(),
            reason,
        };
        let expected = digest_of_name(name).ok_or_else(|| refuse("not a bundle name".to_owned()))?;
        let store = self.bundles().await?;
        let mut object = store.get(name).await.map_err(|e| match e.kind() {
            // Not a network problem that passes: the desired set names a
            // bundle nobody stored (or one deleted since).
            object_store::GetErrorKind::NotFound => refuse("not in the bundle store".to_owned()),
            _ => nats(format!("cannot fetch bundle {name}"))(Box::new(e)),
        })?;
        let size = object.info().size as u64;
        if size > max_bytes {
            return Err(refuse(format!("{size} bytes, over the {max_bytes} allowed")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut object)
            .take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| nats(format!("cannot read bundle {name}"))(Box::new(e)))?;
        if bytes.len() as u64 > max_bytes {
            return Err(refuse(format!("more than the {max_bytes} bytes allowed")));
        }
        let actual = ring::digest::digest(&ring::digest::SHA256, &bytes);
        if actual.as_ref() != expected {
            return Err(refuse(format!(
                "its bytes have digest sha256-{}, not the one of its name",
                hex::encode(actual.as_ref())
            )));
        }
        Ok(bytes)
    }

    /// The desired set under `key` and its generation, if there is one. A
    /// missing bucket is [`CloudError::NoBucket`]: the operator's commands
    /// read it as no set, a device says it in its report.
    pub async fn desired(&self, key: &str) -> Result<Option<(Desired, u64)>, CloudError> {
        let store = self.kv(DESIRED_BUCKET).await?;
        let entry = store
            .entry(key)
            .await
            .map_err(|e| nats(format!("cannot read `{key}`"))(Box::new(e)))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let desired = Desired::parse(&entry.value).map_err(|reason| CloudError::Document {
                    key: key.to_owned(),
                    reason,
                })?;
                Ok(Some((desired, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Write the desired set under `key` if it is still at generation `read`
    /// (`None`: if there is none yet); the new generation.
    pub async fn write_desired(&self, key: &str, desired: &Desired, read: Option<u64>) -> Result<u64, CloudError> {
        let store = self.kv(DESIRED_BUCKET).await?;
        let value = desired.to_bytes().into();
        let written = match read {
            Some(revision) => store.update(key, value, revision).await.map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => CloudError::Conflict {
                    key: key.to_owned(),
                    read: revision,
                },
                _ => nats(format!("cannot write `{key}`"))(Box::new(e)),
            }),
            None => store.create(key, value).await.map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => CloudError::Conflict {
                    key: key.to_owned(),
                    read: 0,
                },
                _ => nats(format!("cannot write `{key}`"))(Box::new(e)),
            }),
        }?;
        Ok(written)
    }

    /// Store `bundle` and put it, as plugin `name` (its manifest's
    /// `version`) with `config`, into the desired set under `key`, written
    /// `by` at `now_ms` with compare-and-set on the generation read (a
    /// conflict is [`CloudError::Conflict`], never retried): the new
    /// generation. What `edgewise push` does, for tools and tests.
    #[allow(clippy::too_many_arguments)]
    pub async fn push_plugin(
        &self,
        key: &str,
        name: &str,
        bundle: &[u8],
        version: &str,
        config: BTreeMap<String, String>,
        by: &str,
        now_ms: i64,
    ) -> Result<u64, CloudError> {
        let object = self.put_bundle(bundle).await?;
        let (mut desired, read) = match self.desired(key).await? {
            Some((desired, generation)) => (desired, Some(generation)),
            None => (Desired::default(), None),
        };
        desired.plugins.insert(
            name.to_owned(),
            DesiredPlugin {
                bundle: object,
                version: version.to_owned(),
                size: bundle.len() as u64,
                config,
                pushed_ms: now_ms,
            },
        );
        desired.written_by = by.to_owned();
        desired.written_ms = now_ms;
        self.write_desired(key, &desired, read).await
    }

    /// Watch the desired sets under `keys`: each change, as it comes. A
    /// watch can miss changes across reconnects: a device also reads its keys
    /// again periodically.
    pub async fn watch_desired(&self, keys: Vec<String>) -> Result<kv::Watch, CloudError> {
        let store = self.kv(DESIRED_BUCKET).await?;
        store
            .watch_many(keys)
            .await
            .map_err(|e| nats("cannot watch the desired sets")(Box::new(e)))
    }

    /// Write a device's report.
    pub async fn report(&self, reported: &Reported) -> Result<(), CloudError> {
        let store = self.kv(REPORTED_BUCKET).await?;
        let key = super::model::device_key(&reported.device);
        store
            .put(&key, reported.to_bytes().into())
            .await
            .map_err(|e| nats(format!("cannot write `{key}`"))(Box::new(e)))?;
        Ok(())
    }

    /// Every device's report; a malformed one, or one naming another device
    /// than its key's, is returned as its error. No
    /// reported bucket (nothing pushed to this cloud yet) is no report.
    pub async fn reports(&self) -> Result<Vec<Result<Reported, CloudError>>, CloudError> {
        let store = match self.kv(REPORTED_BUCKET).await {
            Err(CloudError::NoBucket { .. }) => return Ok(Vec::new()),
            store => store?,
        };
        let mut keys = store
            .keys()
            .await
            .map_err(|e| nats("cannot list the reports")(Box::new(e)))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| nats("cannot list the reports")(Box::new(e)))?);
        }
        let mut reports = Vec::new();
        for key in names {
            let value = store
                .get(&key)
                .await
                .map_err(|e| nats(format!("cannot read `{key}`"))(Box::new(e)))?;
            if let Some(value) = value {
                reports
                    .push(Reported::parse_under(&key, &value).map_err(|reason| CloudError::Document { key, reason }));
            }
        }
        Ok(reports)
    }

    /// One device's report, if it wrote one (none without a reported bucket).
    pub async fn report_of(&self, device: &str) -> Result<Option<Reported>, CloudError> {
        let store = match self.kv(REPORTED_BUCKET).await {
            Err(CloudError::NoBucket { .. }) => return Ok(None),
            store => store?,
        };
        let key = super::model::device_key(device);
        let value = store
            .get(&key)
            .await
            .map_err(|e| nats(format!("cannot read `{key}`"))(Box::new(e)))?;
        value
            .map(|value| Reported::parse_under(&key, &value).map_err(|reason| CloudError::Document { key, reason }))
            .transpose()
    }
}

/// Why the bucket `bucket` could not be opened: [`CloudError::NoBucket`]
/// only when the server said its stream does not exist.
fn open_error(bucket: &str, error: impl std::error::Error + Send + Sync + 'static) -> CloudError {
    if stream_not_found(&error) {
        return CloudError::NoBucket {
            bucket: bucket.to_owned(),
        };
    }
    nats(format!("cannot open the bucket {bucket}"))(Box::new(error))
}

/// Whether JetStream answered "stream not found" somewhere in `error`'s
/// chain (a bucket is a stream: `KV_<name>`, `OBJ_<name>`).
fn stream_not_found(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(get) = error.downcast_ref::<jetstream::context::GetStreamError>()
            && let jetstream::context::GetStreamErrorKind::JetStream(api) = get.kind()
        {
            return api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND;
        }
        cause = error.source();
    }
    false
}

/// How long one request to the buckets may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
