//! The write-ahead log: segment files of framed records, a committer thread that group-commits
//! them, checkpoints, and recovery.
//!
//! Files in the data folder:
//!
//! - `wal-<first sequence>.log`: segments of framed records ([`super::codec`]), in sequence
//!   order; the last one is appended to.
//! - `snapshot-<sequence>.img`: a checkpoint: the store's [`Image`] covering every record up to
//!   that sequence. Written to a temporary file, synced and renamed, so a snapshot is whole or
//!   absent.
//! - `LOCK`: held (an exclusive file lock) while a process has the store open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use orchestra_core::store::Revision;
use orchestra_core::store::journal::{Image, Journal, Publisher, Record};

use super::OpenError;
use super::codec::{self, Frame};

/// How many bytes of records a committer writes in one batch at most.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// The name of a segment starting at `sequence`.
fn segment_name(sequence: u64) -> String {
    format!("wal-{sequence:020}.log")
}

/// The name of a snapshot covering records up to `sequence`.
pub(crate) fn snapshot_name(sequence: u64) -> String {
    format!("snapshot-{sequence:020}.img")
}

fn parse_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn io_error(path: &Path, error: io::Error) -> OpenError {
    OpenError::Io {
        path: path.to_owned(),
        source: error,
    }
}

/// Syncs a directory, so that the files created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temporary file, synced, renamed, and the folder synced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    sync_dir(dir)
}

/// What recovery found in a data folder.
pub(crate) struct Recovered {
    /// The newest snapshot's image (an empty store when there is none).
    pub(crate) image: Image,
    /// The records after it, in order.
    pub(crate) records: Vec<Record>,
    /// The sequence number of the last record (or of the snapshot).
    pub(crate) last_sequence: u64,
    /// The segments, by first sequence.
    pub(crate) segments: Vec<(u64, PathBuf)>,
    /// The snapshots, by sequence.
    pub(crate) snapshots: Vec<(u64, PathBuf)>,
    /// Bytes of records in the segments.
    pub(crate) journal_bytes: u64,
}

/// Reads a data folder: the newest snapshot and every record after it. A write cut short at the
/// end of the last segment (a crash in the middle of a batch, never acknowledged) is cut off (with
/// `repair`; without, as when reading a folder another process is writing, it is only not read);
/// damage anywhere else is an error, so that damaged data is never served.
pub(crate) fn recover(dir: &Path, repair: bool) -> Result<Recovered, OpenError> {
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(sequence) = parse_name(&name, "wal-", ".log") {
            segments.push((sequence, entry.path()));
        } else if let Some(sequence) = parse_name(&name, "snapshot-", ".img") {
            snapshots.push((sequence, entry.path()));
        }
    }
    segments.sort();
    snapshots.sort();
    let (mut image, covered) = match snapshots.last() {
        Some((sequence, path)) => {
            let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
            let image = codec::decode_image(&bytes).map_err(|error| OpenError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: error.0,
            })?;
            (image, *sequence)
        }
        None => (Image::default(), 0),
    };
    if image.revision == 0 {
        image.revision = 1;
        image.next_lease = image.next_lease.max(1);
    }
    let mut records = Vec::new();
    let mut last_sequence = covered;
    let mut journal_bytes = 0;
    let count = segments.len();
    for (index, (_, path)) in segments.iter().enumerate() {
        let last_segment = index + 1 == count;
        let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
        let mut position = 0;
        loop {
            match codec::decode_frame(&bytes[position..]) {
                Frame::Record(sequence, record, length) => {
                    if sequence > covered {
                        if sequence != last_sequence + 1 {
                            return Err(OpenError::Corrupt {
                                path: path.clone(),
                                offset: position as u64,
                                reason: format!("record {sequence} follows record {last_sequence}"),
                            });
                        }
                        last_sequence = sequence;
                        records.push(record);
                    }
                    position += length;
                }
                Frame::End => {
                    if repair && last_segment && position < bytes.len() {
                        // Zeros a crash left after the last record: cut them off, so that
                        // new records follow the last one directly.
                        let file = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(|e| io_error(path, e))?;
                        file.set_len(position as u64)
                            .map_err(|e| io_error(path, e))?;
                        file.sync_all().map_err(|e| io_error(path, e))?;
                    }
                    break;
                }
                Frame::Torn | Frame::Corrupt(_) if last_segment && is_tail(&bytes[position..]) => {
                    // The batch the crash interrupted (or, for a reader, the one being written):
                    // never synced, never acknowledged.
                    if !repair {
                        break;
                    }
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| io_error(path, e))?;
                    file.set_len(position as u64)
                        .map_err(|e| io_error(path, e))?;
                    file.sync_all().map_err(|e| io_error(path, e))?;
                    break;
                }
                Frame::Torn => {
                    return Err(OpenError::Corrupt {
                        path: path.clone(),
                        offset: position as u64,
                        reason: "a segment that later segments follow ends in a torn record".into(),
                    });
                }
                Frame::Corrupt(reason) => {
                    return Err(OpenError::Corrupt {
                        path: path.clone(),
                        offset: position as u64,
                        reason,
                    });
                }
            }
        }
        journal_bytes += position as u64;
    }
    Ok(Recovered {
        image,
        records,
        last_sequence,
        segments,
        snapshots,
        journal_bytes,
    })
}

/// Whether the bytes from a bad frame on can be what a crash in the middle of the last batch left:
/// the frame's claimed extent reaches the end of the file (or runs past it), so no intact frame
/// follows it.
fn is_tail(bytes: &[u8]) -> bool {
    let mut reader = codec::Reader::new(bytes);
    match reader.u32() {
        Ok(length) => (length as usize).saturating_add(codec::FRAME_HEADER) >= bytes.len(),
        Err(_) => true,
    }
}

/// How far the journal got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Durable {
    sequence: u64,
    failed: Option<String>,
}

/// What the committer is asked to do.
enum Command {
    Append(u64, Record),
    Checkpoint(Box<Image>, u64),
}

/// The journal of the embedded store: see the [module documentation](self).
pub(crate) struct Wal {
    sender: Mutex<Option<mpsc::Sender<Command>>>,
    next_sequence: AtomicU64,
    durable: tokio::sync::watch::Sender<Durable>,
    bytes: Arc<AtomicU64>,
    checkpointing: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The data folder's lock, held as long as the log can be written (watch streams keep the
    /// log alive after the last store handle is gone).
    _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("durable", &self.durable.borrow().sequence)
            .finish_non_exhaustive()
    }
}

/// The committer thread's state.
struct Committer {
    dir: PathBuf,
    file: File,
    segments: Vec<(u64, PathBuf)>,
    snapshots: Vec<(u64, PathBuf)>,
    publisher: Publisher,
    durable: tokio::sync::watch::Sender<Durable>,
    bytes: Arc<AtomicU64>,
    /// Set while a checkpoint is asked for and not written yet.
    checkpointing: Arc<AtomicBool>,
    /// The last sequence written to the current segment.
    written: u64,
}

impl Wal {
    /// Starts the journal after recovery: appends go to the last segment (or a new one).
    pub(crate) fn start(
        dir: &Path,
        recovered: &Recovered,
        publisher: Publisher,
        lock: File,
    ) -> Result<Wal, OpenError> {
        let mut segments = recovered.segments.clone();
        let path = match segments.last() {
            Some((_, path)) => path.clone(),
            None => {
                let path = dir.join(segment_name(recovered.last_sequence + 1));
                segments.push((recovered.last_sequence + 1, path.clone()));
                path
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        sync_dir(dir).map_err(|e| io_error(dir, e))?;
        let (durable, _) = tokio::sync::watch::channel(Durable {
            sequence: recovered.last_sequence,
            failed: None,
        });
        let bytes = Arc::new(AtomicU64::new(recovered.journal_bytes));
        let checkpointing = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = mpsc::channel();
        let committer = Committer {
            dir: dir.to_owned(),
            file,
            segments,
            snapshots: recovered.snapshots.clone(),
            publisher,
            durable: durable.clone(),
            bytes: Arc::clone(&bytes),
            checkpointing: Arc::clone(&checkpointing),
            written: recovered.last_sequence,
        };
        let thread = std::thread::Builder::new()
            .name("orchestra-wal".into())
            .spawn(move || committer.run(&receiver))
            .map_err(|e| io_error(dir, e))?;
        Ok(Wal {
            sender: Mutex::new(Some(sender)),
            next_sequence: AtomicU64::new(recovered.last_sequence + 1),
            durable,
            bytes,
            checkpointing,
            thread: Mutex::new(Some(thread)),
            _lock: lock,
        })
    }

    /// Bytes of records since the last checkpoint.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether a checkpoint was asked for and is not written yet.
    pub(crate) fn checkpointing(&self) -> bool {
        self.checkpointing.load(Ordering::SeqCst)
    }

    /// Asks the committer to write a checkpoint of `image` (covering records up to `sequence`)
    /// and drop the journal it makes unnecessary.
    pub(crate) fn checkpoint(&self, image: Image, sequence: u64) {
        self.checkpointing.store(true, Ordering::SeqCst);
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = sender.as_ref() {
            let _ = sender.send(Command::Checkpoint(Box::new(image), sequence));
        }
    }
}

impl Journal for Wal {
    fn append(&self, record: Record) -> u64 {
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = sender.as_ref()
            && sender.send(Command::Append(sequence, record)).is_err()
        {
            self.durable.send_modify(|durable| {
                durable
                    .failed
                    .get_or_insert_with(|| "the journal's writer has stopped".into());
            });
        }
        sequence
    }

    fn durable(&self, sequence: u64) -> BoxFuture<'static, Result<(), String>> {
        let mut durable = self.durable.subscribe();
        async move {
            let state = durable
                .wait_for(|state| state.sequence >= sequence || state.failed.is_some())
                .await
                .map_err(|_| "the journal has stopped".to_owned())?;
            match &state.failed {
                Some(reason) if state.sequence < sequence => Err(reason.clone()),
                _ => Ok(()),
            }
        }
        .boxed()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Closing the channel stops the committer once it has written what it was given.
        drop(
            self.sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

impl Committer {
    fn run(mut self, receiver: &mpsc::Receiver<Command>) {
        let mut buffer = Vec::with_capacity(1 << 16);
        while let Ok(first) = receiver.recv() {
            let mut commands = vec![first];
            let mut pending_bytes = 0;
            while pending_bytes < MAX_BATCH_BYTES {
                match receiver.try_recv() {
                    Ok(command) => {
                        if let Command::Append(_, Record::Revision { events, .. }) = &command {
                            pending_bytes += events
                                .iter()
                                .map(|e| e.kv.key.len() + e.kv.value.len() + 48)
                                .sum::<usize>();
                        }
                        commands.push(command);
                    }
                    Err(_) => break,
                }
            }
            if let Err(error) = self.commit(commands, &mut buffer) {
                let reason = error.to_string();
                self.durable.send_modify(|durable| {
                    durable.failed.get_or_insert(reason);
                });
                return;
            }
        }
    }

    /// Writes a batch: every record, one sync, then publication and acknowledgement.
    fn commit(&mut self, commands: Vec<Command>, buffer: &mut Vec<u8>) -> io::Result<()> {
        buffer.clear();
        let mut revision: Option<Revision> = None;
        for command in commands {
            match command {
                Command::Append(sequence, record) => {
                    if let Record::Revision { revision: r, .. } = &record {
                        revision = Some(*r);
                    }
                    codec::encode_frame(sequence, &record, buffer);
                    self.written = sequence;
                }
                Command::Checkpoint(image, sequence) => {
                    self.flush(buffer, revision.take())?;
                    self.write_checkpoint(&image, sequence)?;
                }
            }
        }
        self.flush(buffer, revision)
    }

    fn flush(&mut self, buffer: &mut Vec<u8>, revision: Option<Revision>) -> io::Result<()> {
        if !buffer.is_empty() {
            self.file.write_all(buffer)?;
            self.file.sync_data()?;
            self.bytes.fetch_add(buffer.len() as u64, Ordering::Relaxed);
            buffer.clear();
        }
        if let Some(revision) = revision {
            self.publisher.publish(revision);
        }
        let written = self.written;
        self.durable.send_if_modified(|durable| {
            let newer = written > durable.sequence;
            if newer {
                durable.sequence = written;
            }
            newer
        });
        Ok(())
    }

    /// Writes a snapshot, starts a new segment, and removes what the snapshot makes unnecessary.
    fn write_checkpoint(&mut self, image: &Image, sequence: u64) -> io::Result<()> {
        self.bytes.store(0, Ordering::Relaxed);
        self.checkpointing.store(false, Ordering::SeqCst);
        if self
            .snapshots
            .last()
            .is_some_and(|(covered, _)| *covered >= sequence)
        {
            // Nothing since the last checkpoint: it stands.
            return Ok(());
        }
        let path = self.dir.join(snapshot_name(sequence));
        write_atomically(&path, &codec::encode_image(image))?;
        let next = self.written + 1;
        // A new segment, unless the current one holds no record yet (it then starts at `next`).
        if self.segments.last().is_none_or(|(start, _)| *start < next) {
            let segment = self.dir.join(segment_name(next));
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&segment)?;
            self.segments.push((next, segment));
            sync_dir(&self.dir)?;
        }
        // Older snapshots go; so do segments every record of which the snapshot covers (a
        // segment ends where the next one starts).
        for (_, old) in self.snapshots.drain(..) {
            if old != path {
                let _ = fs::remove_file(old);
            }
        }
        self.snapshots.push((sequence, path));
        let mut kept = Vec::new();
        let starts: Vec<u64> = self.segments.iter().map(|(start, _)| *start).collect();
        for (index, (start, segment)) in self.segments.drain(..).enumerate() {
            let covered = starts
                .get(index + 1)
                .is_some_and(|next_start| *next_start <= sequence + 1);
            if covered {
                let _ = fs::remove_file(&segment);
            } else {
                kept.push((start, segment));
            }
        }
        self.segments = kept;
        sync_dir(&self.dir)
    }
}
