//! The embedded store: durable and crash-safe in one data folder, with no daemon.
//!
//! # Why a write-ahead log of our own
//!
//! The store must keep etcd's model — a revision per write, the history of every key, an ordered
//! event log for watches, leases — and the in-memory engine of `orchestra-core`
//! ([`MemoryStore`]) already serves that model, fast, from memory. What it lacks is durability. An
//! embedded engine such as redb or fjall would store the keys durably, but it would store them a
//! second time, in its own layout, and every read, range and watch would go through it; and its
//! commits are one fsync each unless batched on top. So the embedded store keeps the engine in
//! memory and makes it durable with a write-ahead log of its own:
//!
//! - Every change the engine makes (a transaction's revision, a lease granted, renewed or ended, a
//!   compaction) is a record, handed to the log in the engine's order without blocking.
//! - One committer thread writes the records **in batches**: everything queued while the previous
//!   batch was being synced goes out with one `write` and one `fdatasync`. So throughput grows with
//!   the number of concurrent writers (group commit), while each write waits for one sync.
//! - The engine makes a change **visible only once it is durable**: reads and watches see the last
//!   synced revision, and a call that changed something returns only after the sync. **A call that
//!   returns `Ok` made a durable change**; no reader ever sees a change a crash could take back.
//! - Records are framed with a length, a sequence number and a CRC-32C. A crash can only cut the
//!   last batch short, and that batch was never acknowledged: on opening, a torn or garbled tail of
//!   the last segment is cut off; damage anywhere else makes opening fail with
//!   [`OpenError::Corrupt`] naming the file and offset. Damaged data is never served.
//! - When the log grows past [`EmbeddedOptions::checkpoint_bytes`], the store writes a
//!   **checkpoint** (an image of the whole store, written atomically) and drops the log it covers.
//!   Opening reads the newest checkpoint and replays the log after it.
//! - **History** is kept for watches, and compacted automatically to the last
//!   [`EmbeddedOptions::retention`] revisions (or by [`Store::compact`]).
//! - **Leases** survive a restart with their wall-clock renewal time: a lease whose time ran out
//!   while the store was closed expires (deleting its keys) as soon as it opens.
//!
//! The store also takes an online **backup** ([`EmbeddedStore::backup`]) to one file, which
//! [`EmbeddedStore::restore`] turns into a new data folder.
//!
//! # Examples
//!
//! ```
//! use bytes::Bytes;
//! use orchestra_core::store::Store;
//! use orchestra_store::embedded::{EmbeddedOptions, EmbeddedStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! {
//!     let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?;
//!     store.put("/registry/core/pods/default/web", Bytes::from_static(b"{}")).await?;
//! } // closed: every acknowledged write is on disk
//! let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?;
//! assert!(store.get("/registry/core/pods/default/web").await?.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! [`Store::compact`]: orchestra_core::store::Store::compact

mod codec;
mod wal;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestra_core::store::journal::{Journal, ReplayError};
use orchestra_core::store::{
    Lease, LeaseId, MemoryStore, RangeRequest, RangeResponse, Result, Revision, Store, Txn,
    TxnResponse, WatchRequest, WatchStream,
};

use wal::Wal;

/// How the embedded store behaves.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Write a checkpoint (and drop the log it covers) when the log has grown past this many
    /// bytes (64 MiB by default).
    pub checkpoint_bytes: u64,
    /// Keep this many revisions of history for watches, compacting older ones automatically
    /// (`None`: only explicit compactions; 100,000 by default).
    pub retention: Option<Revision>,
}

impl Default for EmbeddedOptions {
    fn default() -> EmbeddedOptions {
        EmbeddedOptions {
            checkpoint_bytes: 64 << 20,
            retention: Some(100_000),
        }
    }
}

/// Why a data folder could not be opened (or a backup restored).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Stored data is damaged: the store refuses to serve it.
    #[error("{} is damaged at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint and the log do not fit together.
    #[error("{0}")]
    Replay(#[from] ReplayError),
    /// Another process has the data folder open.
    #[error("{} is in use by another process", path.display())]
    Locked {
        /// The data folder.
        path: PathBuf,
    },
    /// A restore was asked into a folder that already holds a store.
    #[error("{} already holds a store; restore into a new folder", path.display())]
    NotEmpty {
        /// The folder.
        path: PathBuf,
    },
}

/// The durable store of one data folder: see the [module documentation](self).
///
/// Cheap to clone: clones share the store. The store closes (its committer thread writes what it
/// was given and stops) when the last clone, and the last watch stream, are dropped.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    memory: MemoryStore,
    wal: Arc<Wal>,
    options: EmbeddedOptions,
    dir: PathBuf,
    maintaining: Arc<AtomicBool>,
}

/// A journal handle the engine holds, sharing the store's log.
#[derive(Debug)]
struct SharedWal(Arc<Wal>);

impl Journal for SharedWal {
    fn append(&self, record: orchestra_core::store::journal::Record) -> u64 {
        self.0.append(record)
    }

    fn durable(
        &self,
        sequence: u64,
    ) -> futures_util::future::BoxFuture<'static, std::result::Result<(), String>> {
        self.0.durable(sequence)
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`: reads the newest checkpoint, replays the log after
    /// it, and cuts off a batch a crash left unfinished. Fails on damaged data rather than serving
    /// it, and when another process has the folder open. Blocks on file I/O.
    pub fn open(
        dir: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> std::result::Result<EmbeddedStore, OpenError> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|source| OpenError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| OpenError::Io {
                path: lock_path.clone(),
                source,
            })?;
        if lock.try_lock().is_err() {
            return Err(OpenError::Locked { path: dir });
        }
        let mut recovered = wal::recover(&dir, true)?;
        let image = std::mem::take(&mut recovered.image);
        let records = std::mem::take(&mut recovered.records);
        let mut started: Option<std::result::Result<Arc<Wal>, OpenError>> = None;
        let memory = MemoryStore::journaled(image, records, |publisher| {
            match Wal::start(&dir, &recovered, publisher, lock) {
                Ok(wal) => {
                    let wal = Arc::new(wal);
                    started = Some(Ok(Arc::clone(&wal)));
                    Arc::new(SharedWal(wal))
                }
                Err(error) => {
                    started = Some(Err(error));
                    Arc::new(Failed)
                }
            }
        })?;
        let wal = started.unwrap_or_else(|| {
            Err(OpenError::Replay(ReplayError(
                "the journal was not started".into(),
            )))
        })?;
        Ok(EmbeddedStore {
            memory,
            wal,
            options,
            dir,
            maintaining: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a consistent image of the whole store (every key, its retained history, every
    /// lease) to `path`, atomically, while the store keeps serving. Blocks on file I/O.
    pub fn backup(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let (image, _) = self.memory.image();
        wal::write_atomically(path.as_ref(), &codec::encode_image(&image))
    }

    /// Backs up the store in `dir` to the file `to`, whether or not a process has it open: the
    /// folder is read without being changed (a batch being written is left out, as it is not yet
    /// acknowledged), so the backup holds every write acknowledged before it started. Returns the
    /// revision the backup holds. Blocks on file I/O.
    pub fn backup_data_dir(
        dir: impl AsRef<Path>,
        to: impl AsRef<Path>,
    ) -> std::result::Result<Revision, OpenError> {
        let dir = dir.as_ref();
        let mut attempts = 0;
        let recovered = loop {
            attempts += 1;
            match wal::recover(dir, false) {
                // A checkpoint of the running store may remove files while they are read.
                Err(OpenError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempts < 5 => {}
                Err(OpenError::Corrupt { .. }) if attempts < 5 => {}
                outcome => break outcome?,
            }
        };
        let memory =
            MemoryStore::journaled(recovered.image, recovered.records, |_| Arc::new(Failed))?;
        let (image, _) = memory.image();
        let revision = image.revision;
        wal::write_atomically(to.as_ref(), &codec::encode_image(&image)).map_err(|source| {
            OpenError::Io {
                path: to.as_ref().to_owned(),
                source,
            }
        })?;
        Ok(revision)
    }

    /// Makes a new data folder `dir` from a backup file: the store opened there holds what the
    /// store held when the backup was taken. `dir` must not hold a store yet.
    pub fn restore(
        backup: impl AsRef<Path>,
        dir: impl AsRef<Path>,
    ) -> std::result::Result<(), OpenError> {
        let backup = backup.as_ref();
        let dir = dir.as_ref();
        let bytes = fs::read(backup).map_err(|source| OpenError::Io {
            path: backup.to_owned(),
            source,
        })?;
        codec::decode_image(&bytes).map_err(|error| OpenError::Corrupt {
            path: backup.to_owned(),
            offset: 0,
            reason: error.0,
        })?;
        fs::create_dir_all(dir).map_err(|source| OpenError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let occupied = fs::read_dir(dir)
            .map_err(|source| OpenError::Io {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(std::result::Result::ok)
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.starts_with("wal-") || name.starts_with("snapshot-")
            });
        if occupied {
            return Err(OpenError::NotEmpty {
                path: dir.to_owned(),
            });
        }
        wal::write_atomically(&dir.join(wal::snapshot_name(0)), &bytes).map_err(|source| {
            OpenError::Io {
                path: dir.to_owned(),
                source,
            }
        })
    }

    /// Writes a checkpoint now (normally done when the log grows past
    /// [`EmbeddedOptions::checkpoint_bytes`]). It is written in the background, in order with
    /// the writes.
    pub fn checkpoint(&self) {
        let (image, sequence) = self.memory.image();
        self.wal.checkpoint(image, sequence);
    }

    /// After a write: a checkpoint when the log is long, a compaction when history is long.
    async fn maintain(&self) {
        if self.maintaining.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.wal.bytes() > self.options.checkpoint_bytes && !self.wal.checkpointing() {
            self.checkpoint();
        }
        if let Some(retention) = self.options.retention {
            let compacted = self.memory.compact_revision();
            if let Ok(current) = self.memory.current_revision().await
                && current - compacted.max(1) > retention.saturating_mul(2)
            {
                let _ = self.memory.compact(current - retention).await;
            }
        }
        self.maintaining.store(false, Ordering::SeqCst);
    }
}

/// The journal of a store whose log could not start (opening then fails; never used).
#[derive(Debug)]
struct Failed;

impl Journal for Failed {
    fn append(&self, _: orchestra_core::store::journal::Record) -> u64 {
        0
    }

    fn durable(
        &self,
        _: u64,
    ) -> futures_util::future::BoxFuture<'static, std::result::Result<(), String>> {
        Box::pin(async { Err("the journal did not start".to_owned()) })
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.memory.range(request).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let response = self.memory.txn(txn).await;
        self.maintain().await;
        response
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        self.memory.watch(request).await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        self.memory.lease_grant(ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.memory.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.memory.lease_revoke(id).await
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Duration> {
        self.memory.lease_time_to_live(id).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.memory.compact(revision).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.memory.current_revision().await
    }
}
