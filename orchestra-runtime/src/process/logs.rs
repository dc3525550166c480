//! Container log files in the CRI format.
//!
//! Each container's output is kept in a file with one entry per line:
//!
//! ```text
//! 2026-01-01T00:00:05.000000000Z stdout F hello world
//! ```
//!
//! that is the time (RFC 3339, UTC, nanoseconds), the stream (`stdout` or `stderr`), a tag (`F`
//! for a full line, `P` for a chunk of a long line that continues in the next entry of the same
//! stream) and the content. [`LogWriter`] writes such a file, rotating it by size; [`pump`] copies
//! a process's output stream into it; [`read`] and [`follow`] read it back as
//! [`LogLine`]s.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use jiff::Timestamp;
use orchestra_core::clock::Clock;
use orchestra_core::container_runtime::{LogLine, LogLines, LogOptions, LogStream, RuntimeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// The most content one entry holds; longer lines are split into [`Tag::Partial`] entries
/// followed by a [`Tag::Full`] one.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// How often [`follow`] looks for new entries.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Whether an entry ends its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    /// The entry ends the line (`F`).
    Full,
    /// The line continues in the next entry of the same stream (`P`).
    Partial,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// One entry of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When it was written.
    pub time: Timestamp,
    /// Which stream it came from.
    pub stream: LogStream,
    /// Whether it ends its line.
    pub tag: Tag,
    /// Its content, without a newline.
    pub content: Bytes,
}

/// A log file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// An entry is not in the CRI log format.
    #[error("malformed log entry: {reason}")]
    Malformed {
        /// What is wrong, and where.
        reason: String,
    },
    /// Reading the file failed.
    #[error("log file: {0}")]
    Io(#[from] io::Error),
}

fn malformed(reason: impl Into<String>) -> LogFileError {
    LogFileError::Malformed {
        reason: reason.into(),
    }
}

fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    }
}

/// One entry in the CRI log format, with its trailing newline.
///
/// `content` should not hold a newline (it would end the entry early).
pub fn format_entry(time: Timestamp, stream: LogStream, tag: Tag, content: &[u8]) -> Vec<u8> {
    let head = format!("{:.9} {} {} ", time, stream_name(stream), tag.as_str());
    let mut entry = Vec::with_capacity(head.len() + content.len() + 1);
    entry.extend_from_slice(head.as_bytes());
    entry.extend_from_slice(content);
    entry.push(b'\n');
    entry
}

/// Splits off the field up to the next space: `(field, rest)`, `rest` being `None` when there
/// is no space.
fn next_field(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match line.iter().position(|&byte| byte == b' ') {
        Some(at) => (&line[..at], Some(&line[at + 1..])),
        None => (line, None),
    }
}

/// Parses one entry of a log file (without its trailing newline).
pub fn parse_entry(line: &[u8]) -> Result<Entry, LogFileError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.is_empty() {
        return Err(malformed("empty line"));
    }
    let (time, rest) = next_field(line);
    let time_text = String::from_utf8_lossy(time);
    let time: Timestamp = std::str::from_utf8(time)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| malformed(format!("bad timestamp {time_text:?}")))?;
    let rest = rest.ok_or_else(|| malformed("missing stream"))?;
    let (stream, rest) = next_field(rest);
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        b"" => return Err(malformed("missing stream")),
        other => {
            return Err(malformed(format!(
                "unknown stream {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let rest = rest.ok_or_else(|| malformed("missing tag"))?;
    let (tag, content) = next_field(rest);
    let tag = match tag {
        b"F" => Tag::Full,
        b"P" => Tag::Partial,
        b"" => return Err(malformed("missing tag")),
        other => {
            return Err(malformed(format!(
                "unknown tag {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    Ok(Entry {
        time,
        stream,
        tag,
        content: Bytes::copy_from_slice(content.unwrap_or_default()),
    })
}

/// `path.n`: the `n`th rotated file of `path`.
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Writes a container's log file, rotating it when it grows past a size.
///
/// At most `max_files` files are kept: `path` (the newest), `path.1`, ... `path.{max_files-1}`
/// (the oldest).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: tokio::fs::File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

async fn open_append(path: &Path) -> io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

async fn remove_if_exists(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

async fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match tokio::fs::rename(from, to).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

impl LogWriter {
    /// Opens `path` for appending (creating it and its parent directories), keeping it under
    /// `max_bytes` (but for single entries larger than that) in at most `max_files` files.
    pub async fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<LogWriter> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = open_append(path).await?;
        let size = file.metadata().await?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            max_files: max_files.max(1),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `content` as a full line (as several lines if it holds newlines), splitting it
    /// into [`Tag::Partial`] entries when longer than [`MAX_ENTRY_BYTES`].
    pub async fn write(
        &mut self,
        time: Timestamp,
        stream: LogStream,
        content: &[u8],
    ) -> io::Result<()> {
        for line in content.split(|&byte| byte == b'\n') {
            let mut rest = line;
            while rest.len() > MAX_ENTRY_BYTES {
                let (chunk, after) = rest.split_at(MAX_ENTRY_BYTES);
                self.write_entry(time, stream, Tag::Partial, chunk).await?;
                rest = after;
            }
            self.write_entry(time, stream, Tag::Full, rest).await?;
        }
        Ok(())
    }

    /// Writes one entry as is (`content` should hold no newline), rotating first if it would
    /// push the file past its size limit.
    pub async fn write_entry(
        &mut self,
        time: Timestamp,
        stream: LogStream,
        tag: Tag,
        content: &[u8],
    ) -> io::Result<()> {
        let entry = format_entry(time, stream, tag, content);
        let len = entry.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate().await?;
        }
        self.file.write_all(&entry).await?;
        self.file.flush().await?;
        self.size += len;
        Ok(())
    }

    /// Moves `path` to `path.1` (and so on, dropping the oldest) and starts a new `path`; with a
    /// single file, truncates it.
    async fn rotate(&mut self) -> io::Result<()> {
        self.file.flush().await?;
        if self.max_files <= 1 {
            self.file.set_len(0).await?;
        } else {
            remove_if_exists(&rotated(&self.path, self.max_files - 1)).await?;
            for n in (1..self.max_files - 1).rev() {
                rename_if_exists(&rotated(&self.path, n), &rotated(&self.path, n + 1)).await?;
            }
            tokio::fs::rename(&self.path, rotated(&self.path, 1)).await?;
            self.file = open_append(&self.path).await?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Copies a process's output stream into its log file until end of file, one entry per line
/// (a last line without newline included), each stamped with `clock`'s time when written.
///
/// Lines longer than [`MAX_ENTRY_BYTES`] are written in [`Tag::Partial`] chunks as they come,
/// so a line without end does not fill memory.
pub async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: LogStream,
    writer: Arc<Mutex<LogWriter>>,
    clock: Arc<dyn Clock>,
) -> io::Result<()> {
    let mut buffer = vec![0; 8 * 1024];
    let mut line: Vec<u8> = Vec::new();
    // Whether part of `line` went out already as partial entries.
    let mut started = false;
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        let mut rest = &buffer[..read];
        while !rest.is_empty() {
            match rest.iter().position(|&byte| byte == b'\n') {
                Some(at) => {
                    line.extend_from_slice(&rest[..at]);
                    rest = &rest[at + 1..];
                    let mut writer = writer.lock().await;
                    writer.write(clock.now(), stream, &line).await?;
                    line.clear();
                    started = false;
                }
                None => {
                    line.extend_from_slice(rest);
                    rest = &[];
                    while line.len() > MAX_ENTRY_BYTES {
                        let mut writer = writer.lock().await;
                        writer
                            .write_entry(
                                clock.now(),
                                stream,
                                Tag::Partial,
                                &line[..MAX_ENTRY_BYTES],
                            )
                            .await?;
                        drop(writer);
                        line.drain(..MAX_ENTRY_BYTES);
                        started = true;
                    }
                }
            }
        }
    }
    if !line.is_empty() || started {
        let mut writer = writer.lock().await;
        writer.write(clock.now(), stream, &line).await?;
    }
    Ok(())
}

/// Joins partial entries into lines.
#[derive(Debug, Default)]
struct Assembler {
    /// The line being put together, per stream: the time of its first chunk and its content.
    partial: [Option<(Timestamp, Vec<u8>)>; 2],
}

impl Assembler {
    fn slot(stream: LogStream) -> usize {
        match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        }
    }

    /// Takes in an entry, giving the line it ends.
    fn push(&mut self, entry: Entry) -> Option<LogLine> {
        let slot = &mut self.partial[Self::slot(entry.stream)];
        match (entry.tag, slot.as_mut()) {
            (Tag::Partial, Some((_, content))) => {
                content.extend_from_slice(&entry.content);
                None
            }
            (Tag::Partial, None) => {
                *slot = Some((entry.time, entry.content.to_vec()));
                None
            }
            (Tag::Full, _) => Some(match slot.take() {
                Some((time, mut content)) => {
                    content.extend_from_slice(&entry.content);
                    LogLine {
                        time,
                        stream: entry.stream,
                        content: Bytes::from(content),
                    }
                }
                None => LogLine {
                    time: entry.time,
                    stream: entry.stream,
                    content: entry.content,
                },
            }),
        }
    }

    /// The lines started but not ended, oldest first.
    fn finish(&mut self) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                self.partial[Self::slot(stream)]
                    .take()
                    .map(|(time, content)| LogLine {
                        time,
                        stream,
                        content: Bytes::from(content),
                    })
            })
            .collect();
        lines.sort_by_key(|line| line.time);
        lines
    }
}

/// Parses the complete lines at the start of `data` into `out`, numbering them from
/// `*line_no + 1`; gives how many bytes were used (the rest is an unfinished line).
fn parse_lines(
    data: &[u8],
    file: &Path,
    line_no: &mut usize,
    assembler: &mut Assembler,
    out: &mut Vec<LogLine>,
) -> Result<usize, LogFileError> {
    let mut used = 0;
    while let Some(end) = data[used..].iter().position(|&byte| byte == b'\n') {
        let line = &data[used..used + end];
        used += end + 1;
        *line_no += 1;
        if line.is_empty() {
            continue;
        }
        let entry = parse_entry(line).map_err(|error| match error {
            LogFileError::Malformed { reason } => {
                malformed(format!("{} line {}: {reason}", file.display(), *line_no))
            }
            other => other,
        })?;
        out.extend(assembler.push(entry));
    }
    Ok(used)
}

/// The rotated files of `path` (`path.N`) that exist, oldest (highest `N`) first.
async fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut found = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let file_name = entry.file_name();
        let number = file_name
            .to_str()
            .and_then(|file_name| file_name.strip_prefix(&prefix))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<usize>().ok())
            .filter(|&n| n >= 1);
        if let Some(n) = number {
            found.push(n);
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found.into_iter().map(|n| rotated(path, n)).collect())
}

/// The current log file, read as it grows.
#[derive(Debug)]
struct Tail {
    path: PathBuf,
    file: tokio::fs::File,
    /// Device and inode of the open file.
    id: (u64, u64),
    /// Bytes read so far.
    offset: u64,
    /// Read bytes of a line not yet complete.
    pending: Vec<u8>,
    /// Lines parsed so far.
    line_no: usize,
}

impl Tail {
    /// Opens `path`, `None` when it does not exist.
    async fn open(path: &Path) -> io::Result<Option<Tail>> {
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let meta = file.metadata().await?;
        Ok(Some(Tail {
            path: path.to_owned(),
            file,
            id: (meta.dev(), meta.ino()),
            offset: 0,
            pending: Vec::new(),
            line_no: 0,
        }))
    }

    /// Reads what was added since the last read; gives whether there was anything.
    async fn read_new(
        &mut self,
        assembler: &mut Assembler,
        out: &mut Vec<LogLine>,
    ) -> Result<bool, LogFileError> {
        let mut data = Vec::new();
        let read = self.file.read_to_end(&mut data).await?;
        if read == 0 {
            return Ok(false);
        }
        self.offset += read as u64;
        self.pending.extend_from_slice(&data);
        let used = parse_lines(&self.pending, &self.path, &mut self.line_no, assembler, out)?;
        self.pending.drain(..used);
        Ok(true)
    }

    /// Starts over from the beginning of the (truncated) file.
    async fn rewind(&mut self) -> io::Result<()> {
        self.file.seek(io::SeekFrom::Start(0)).await?;
        self.offset = 0;
        self.pending.clear();
        self.line_no = 0;
        Ok(())
    }
}

/// Reads the rotated files and the current file of `path` to their end, oldest first.
///
/// Gives the lines ended so far and the current file, open for reading on.
async fn read_backlog(
    path: &Path,
    assembler: &mut Assembler,
) -> Result<(Vec<LogLine>, Option<Tail>), LogFileError> {
    // The current file is opened first, so a rotation while the others are read is noticed.
    let mut tail = Tail::open(path).await?;
    let mut lines = Vec::new();
    for file in rotated_files(path).await? {
        let data = match tokio::fs::read(&file).await {
            Ok(data) => data,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error.into()),
        };
        if let Some(tail) = &tail {
            let meta = tokio::fs::metadata(&file).await?;
            if (meta.dev(), meta.ino()) == tail.id {
                // The file opened as current was rotated since: read it as the current one.
                continue;
            }
        }
        let mut line_no = 0;
        parse_lines(&data, &file, &mut line_no, assembler, &mut lines)?;
    }
    if let Some(tail) = &mut tail {
        tail.read_new(assembler, &mut lines).await?;
    }
    Ok((lines, tail))
}

/// After `path` was rotated more than once since the file `id` was current, reads the rotated
/// files newer than that one; gives whether there was anything.
async fn read_rotated_since(
    path: &Path,
    id: (u64, u64),
    assembler: &mut Assembler,
    lines: &mut Vec<LogLine>,
) -> Result<bool, LogFileError> {
    let mut newer = false;
    let mut got = false;
    for file in rotated_files(path).await? {
        if newer {
            let data = match tokio::fs::read(&file).await {
                Ok(data) => data,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            };
            got |= !data.is_empty();
            let mut line_no = 0;
            parse_lines(&data, &file, &mut line_no, assembler, lines)?;
        } else if let Ok(meta) = tokio::fs::metadata(&file).await {
            newer = (meta.dev(), meta.ino()) == id;
        }
    }
    Ok(got)
}

/// Keeps the lines at or after `options.since`, then the last `options.tail_lines`.
fn select(mut lines: Vec<LogLine>, options: &LogOptions) -> Vec<LogLine> {
    if let Some(since) = options.since {
        lines.retain(|line| line.time >= since);
    }
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    lines
}

/// Reads the log written at `path` (its rotated files, oldest first, then `path`), joining
/// partial entries into lines, as selected by `options` (`follow` is ignored; see [`follow`]).
///
/// A missing file gives no lines; an entry being written (with no newline yet) is left out.
pub async fn read(path: &Path, options: &LogOptions) -> Result<Vec<LogLine>, LogFileError> {
    let mut assembler = Assembler::default();
    let (mut lines, _) = read_backlog(path, &mut assembler).await?;
    lines.extend(assembler.finish());
    Ok(select(lines, options))
}

/// The state of a [`follow`] stream.
struct Follower {
    path: PathBuf,
    options: LogOptions,
    running: Box<dyn Fn() -> bool + Send + Sync>,
    assembler: Assembler,
    tail: Option<Tail>,
    ready: VecDeque<LogLine>,
    started: bool,
    done: bool,
}

impl Follower {
    /// The next line, reading and waiting for more as needed; `None` at the end.
    async fn next(mut self) -> Option<(Result<LogLine, RuntimeError>, Follower)> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some((Ok(line), self));
            }
            if self.done {
                return None;
            }
            match self.advance().await {
                Ok(()) => {}
                Err(error) => {
                    self.done = true;
                    let error =
                        RuntimeError::Internal(format!("reading {}: {error}", self.path.display()));
                    return Some((Err(error), self));
                }
            }
        }
    }

    /// Reads the backlog, or waits and reads what came since.
    async fn advance(&mut self) -> Result<(), LogFileError> {
        if !self.started {
            self.started = true;
            let running = (self.running)();
            let (lines, tail) = read_backlog(&self.path, &mut self.assembler).await?;
            self.tail = tail;
            let lines = select(lines, &self.options);
            if lines.is_empty() && !running {
                self.end();
            }
            self.ready.extend(lines);
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        let running = (self.running)();
        let mut lines = Vec::new();
        let got = self.poll(&mut lines).await?;
        if let Some(since) = self.options.since {
            lines.retain(|line| line.time >= since);
        }
        self.ready.extend(lines);
        if !got && !running {
            self.end();
        }
        Ok(())
    }

    /// Reads what was added to the current file, following it to a new file when it was
    /// rotated; gives whether anything was read.
    async fn poll(&mut self, lines: &mut Vec<LogLine>) -> Result<bool, LogFileError> {
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => Some(meta),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error.into()),
        };
        let current = meta.as_ref().map(|meta| (meta.dev(), meta.ino()));
        let mut got = false;
        if let Some(tail) = &mut self.tail {
            if let Some(meta) = &meta
                && current == Some(tail.id)
                && meta.len() < tail.offset
            {
                tail.rewind().await?;
            }
            // Also after a rotation: the old file is read to its end before the new one.
            got |= tail.read_new(&mut self.assembler, lines).await?;
        }
        let replaced = match (&self.tail, current) {
            (Some(tail), Some(current)) => tail.id != current,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if replaced {
            if let Some(tail) = &self.tail {
                got |= read_rotated_since(&self.path, tail.id, &mut self.assembler, lines).await?;
            }
            self.tail = Tail::open(&self.path).await?;
            if let Some(tail) = &mut self.tail {
                got |= tail.read_new(&mut self.assembler, lines).await?;
            }
        }
        Ok(got)
    }

    /// Ends the stream after the lines read so far, and those never ended.
    fn end(&mut self) {
        self.done = true;
        let mut rest = self.assembler.finish();
        if let Some(since) = self.options.since {
            rest.retain(|line| line.time >= since);
        }
        self.ready.extend(rest);
    }
}

/// Follows the log written at `path`: first what [`read`] gives (as selected by `options`),
/// then the lines written since, looking every 100 ms, across rotations of the file.
///
/// The stream ends when `running` says the container is no longer running and a last look
/// found nothing new. Failures come as [`RuntimeError::Internal`] items, and end the stream.
pub fn follow(
    path: PathBuf,
    options: LogOptions,
    running: impl Fn() -> bool + Send + Sync + 'static,
) -> LogLines {
    let follower = Follower {
        path,
        options,
        running: Box::new(running),
        assembler: Assembler::default(),
        tail: None,
        ready: VecDeque::new(),
        started: false,
        done: false,
    };
    futures_util::stream::unfold(follower, Follower::next).boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::Stream;
    use orchestra_core::clock::TokioClock;

    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn t0() -> Timestamp {
        ts("2026-01-01T00:00:00Z")
    }

    #[test]
    fn format_and_parse_round_trip() {
        let time = ts("2026-01-01T00:00:05Z");
        let entry = format_entry(time, LogStream::Stdout, Tag::Full, b"hello world");
        assert_eq!(
            entry,
            b"2026-01-01T00:00:05.000000000Z stdout F hello world\n"
        );
        let cases = [
            (LogStream::Stdout, Tag::Full, &b"hello  world "[..]),
            (LogStream::Stderr, Tag::Partial, &b"a b c"[..]),
            (LogStream::Stderr, Tag::Full, &b""[..]),
            (LogStream::Stdout, Tag::Partial, &b" leading"[..]),
        ];
        let time = ts("2026-03-04T05:06:07.123456789Z");
        for (stream, tag, content) in cases {
            let line = format_entry(time, stream, tag, content);
            let entry = parse_entry(&line[..line.len() - 1]).unwrap();
            assert_eq!(
                entry,
                Entry {
                    time,
                    stream,
                    tag,
                    content: Bytes::copy_from_slice(content),
                }
            );
        }
        // An entry with empty content and no space after the tag is accepted too.
        let entry = parse_entry(b"2026-01-01T00:00:00Z stdout F").unwrap();
        assert_eq!(entry.content, Bytes::new());
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "empty"),
            (b"2026-01-01T00:00:00Z", "missing stream"),
            (b"yesterday stdout F x", "bad timestamp \"yesterday\""),
            (
                b"2026-01-01T00:00:00Z stdin F x",
                "unknown stream \"stdin\"",
            ),
            (b"2026-01-01T00:00:00Z stdout", "missing tag"),
            (b"2026-01-01T00:00:00Z stdout X x", "unknown tag \"X\""),
            (b"2026-01-01T00:00:00Z  F x", "missing stream"),
        ];
        for (line, expected) in cases {
            let error = parse_entry(line).unwrap_err();
            assert!(matches!(error, LogFileError::Malformed { .. }));
            let message = error.to_string();
            assert!(
                message.contains(expected),
                "{message:?} should mention {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn writer_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/container/0.log");
        let max_bytes = 300;
        let mut writer = LogWriter::open(&path, max_bytes, 3).await.unwrap();
        let count = 100;
        for i in 0..count {
            let time = t0() + jiff::SignedDuration::from_secs(i);
            let stream = if i % 3 == 0 {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            writer
                .write(time, stream, format!("line {i:04}").as_bytes())
                .await
                .unwrap();
        }
        assert!(path.exists());
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let mut files = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>();
        files.sort();
        assert_eq!(files, ["0.log", "0.log.1", "0.log.2"]);
        for file in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let len = std::fs::metadata(&file).unwrap().len();
            assert!(len <= max_bytes, "{} is {len} bytes", file.display());
        }

        let lines = read(&path, &LogOptions::default()).await.unwrap();
        assert!(lines.len() > 10 && lines.len() < 20, "{}", lines.len());
        let first = count as usize - lines.len();
        for (offset, line) in lines.iter().enumerate() {
            let i = first + offset;
            assert_eq!(line.content, format!("line {i:04}").as_bytes());
            assert_eq!(line.time, t0() + jiff::SignedDuration::from_secs(i as i64));
            let stream = if i.is_multiple_of(3) {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            assert_eq!(line.stream, stream);
        }

        // Reopening appends, counting the size already there.
        drop(writer);
        let size = std::fs::metadata(&path).unwrap().len();
        let mut writer = LogWriter::open(&path, max_bytes, 3).await.unwrap();
        writer
            .write(t0(), LogStream::Stdout, b"again")
            .await
            .unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert_ne!(after, size, "written or rotated");
        let lines = read(&path, &LogOptions::default()).await.unwrap();
        assert_eq!(lines.last().unwrap().content, &b"again"[..]);
        assert_eq!(
            lines[lines.len() - 2].content,
            format!("line {:04}", count - 1).as_bytes()
        );
    }

    #[tokio::test]
    async fn single_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 100, 1).await.unwrap();
        for i in 0..10 {
            writer
                .write(t0(), LogStream::Stdout, format!("line {i}").as_bytes())
                .await
                .unwrap();
        }
        assert!(!rotated(&path, 1).exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        let lines = read(&path, &LogOptions::default()).await.unwrap();
        assert_eq!(lines.last().unwrap().content, &b"line 9"[..]);
    }

    #[tokio::test]
    async fn large_entry_is_written_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 100, 3).await.unwrap();
        writer
            .write(t0(), LogStream::Stdout, b"small")
            .await
            .unwrap();
        let big = vec![b'x'; 500];
        writer.write(t0(), LogStream::Stdout, &big).await.unwrap();
        writer
            .write(t0(), LogStream::Stdout, b"after")
            .await
            .unwrap();
        let lines = read(&path, &LogOptions::default()).await.unwrap();
        let contents: Vec<&[u8]> = lines.iter().map(|line| &line.content[..]).collect();
        assert_eq!(contents, [&b"small"[..], &big[..], &b"after"[..]]);
    }

    fn shared_writer(writer: LogWriter) -> Arc<Mutex<LogWriter>> {
        Arc::new(Mutex::new(writer))
    }

    #[tokio::test(start_paused = true)]
    async fn long_line_through_pump_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let writer = shared_writer(LogWriter::open(&path, 10 << 20, 3).await.unwrap());
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(t0()));
        let long: Vec<u8> = (0..MAX_ENTRY_BYTES * 3 + 123)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let exact = vec![b'e'; MAX_ENTRY_BYTES];
        let mut input = b"short\n".to_vec();
        input.extend_from_slice(&long);
        input.push(b'\n');
        input.extend_from_slice(&exact);
        input.push(b'\n');
        input.extend_from_slice(&long);
        pump(&input[..], LogStream::Stdout, writer.clone(), clock)
            .await
            .unwrap();

        let text = std::fs::read(&path).unwrap();
        let partials = text
            .split(|&byte| byte == b'\n')
            .filter(|line| line.windows(3).any(|window| window == b" P "))
            .count();
        assert_eq!(partials, 6);

        let lines = read(&path, &LogOptions::default()).await.unwrap();
        let contents: Vec<&[u8]> = lines.iter().map(|line| &line.content[..]).collect();
        assert_eq!(
            contents,
            [&b"short"[..], &long[..], &exact[..], &long[..]],
            "lines come back whole"
        );
        assert!(lines.iter().all(|line| line.time == t0()));
    }

    #[tokio::test]
    async fn pump_interleaves_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let writer = shared_writer(LogWriter::open(&path, 1 << 20, 3).await.unwrap());
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(t0()));
        let (mut out_tx, out_rx) = tokio::io::duplex(64);
        let (mut err_tx, err_rx) = tokio::io::duplex(64);
        let out_pump = tokio::spawn(pump(
            out_rx,
            LogStream::Stdout,
            writer.clone(),
            clock.clone(),
        ));
        let err_pump = tokio::spawn(pump(err_rx, LogStream::Stderr, writer.clone(), clock));
        for i in 0..20 {
            out_tx
                .write_all(format!("out {i}\n").as_bytes())
                .await
                .unwrap();
            // Split a line across writes.
            err_tx.write_all(b"err ").await.unwrap();
            err_tx.write_all(format!("{i}\n").as_bytes()).await.unwrap();
        }
        out_tx.write_all(b"unterminated").await.unwrap();
        drop(out_tx);
        drop(err_tx);
        out_pump.await.unwrap().unwrap();
        err_pump.await.unwrap().unwrap();

        let lines = read(&path, &LogOptions::default()).await.unwrap();
        assert_eq!(lines.len(), 41);
        let out: Vec<&[u8]> = lines
            .iter()
            .filter(|line| line.stream == LogStream::Stdout)
            .map(|line| &line.content[..])
            .collect();
        let err: Vec<&[u8]> = lines
            .iter()
            .filter(|line| line.stream == LogStream::Stderr)
            .map(|line| &line.content[..])
            .collect();
        let mut expected_out: Vec<Vec<u8>> =
            (0..20).map(|i| format!("out {i}").into_bytes()).collect();
        expected_out.push(b"unterminated".to_vec());
        let expected_err: Vec<Vec<u8>> = (0..20).map(|i| format!("err {i}").into_bytes()).collect();
        assert_eq!(out, expected_out);
        assert_eq!(err, expected_err);
    }

    #[tokio::test]
    async fn since_and_tail_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 1 << 20, 3).await.unwrap();
        for i in 0..10 {
            let time = t0() + jiff::SignedDuration::from_secs(i);
            writer
                .write(time, LogStream::Stdout, format!("{i}").as_bytes())
                .await
                .unwrap();
        }
        let contents = |lines: Vec<LogLine>| {
            lines
                .into_iter()
                .map(|line| String::from_utf8(line.content.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let since = LogOptions {
            since: Some(t0() + jiff::SignedDuration::from_secs(6)),
            ..LogOptions::default()
        };
        assert_eq!(
            contents(read(&path, &since).await.unwrap()),
            ["6", "7", "8", "9"]
        );
        let tail = LogOptions {
            tail_lines: Some(3),
            ..LogOptions::default()
        };
        assert_eq!(contents(read(&path, &tail).await.unwrap()), ["7", "8", "9"]);
        let both = LogOptions {
            tail_lines: Some(10),
            since: Some(t0() + jiff::SignedDuration::from_secs(8)),
            ..LogOptions::default()
        };
        assert_eq!(contents(read(&path, &both).await.unwrap()), ["8", "9"]);
        let none = LogOptions {
            tail_lines: Some(0),
            ..LogOptions::default()
        };
        assert!(read(&path, &none).await.unwrap().is_empty());
        let missing = dir.path().join("missing/0.log");
        assert!(read(&missing, &tail).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut text = Vec::new();
        text.extend(format_entry(t0(), LogStream::Stdout, Tag::Full, b"one"));
        text.extend(format_entry(t0(), LogStream::Stdout, Tag::Full, b"two"));
        text.extend_from_slice(b"2026-01-01T00:00:00Z stdout Q three\n");
        text.extend(format_entry(t0(), LogStream::Stdout, Tag::Full, b"four"));
        std::fs::write(&path, text).unwrap();
        let error = read(&path, &LogOptions::default()).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("0.log"), "{message}");
        assert!(message.contains("unknown tag \"Q\""), "{message}");

        let mut lines = follow(path, LogOptions::default(), || false);
        let item = next(&mut lines).await.unwrap();
        let error = item.unwrap_err();
        assert!(matches!(error, RuntimeError::Internal(_)));
        assert!(error.to_string().contains("line 3"), "{error}");
        assert!(next(&mut lines).await.is_none());
    }

    async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
    }

    fn flag(value: bool) -> (Arc<AtomicBool>, impl Fn() -> bool + Send + Sync + 'static) {
        let flag = Arc::new(AtomicBool::new(value));
        let reader = flag.clone();
        (flag, move || reader.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn follow_gives_backlog_then_new_lines_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 1 << 20, 3).await.unwrap();
        for i in 0..5 {
            writer
                .write(t0(), LogStream::Stdout, format!("old {i}").as_bytes())
                .await
                .unwrap();
        }
        let (running, is_running) = flag(true);
        let options = LogOptions {
            follow: true,
            tail_lines: Some(2),
            since: None,
        };
        let mut lines = follow(path.clone(), options, is_running);
        assert_eq!(next(&mut lines).await.unwrap().unwrap().content, "old 3");
        assert_eq!(next(&mut lines).await.unwrap().unwrap().content, "old 4");

        writer.write(t0(), LogStream::Stderr, b"new").await.unwrap();
        let line = next(&mut lines).await.unwrap().unwrap();
        assert_eq!(line.content, "new");
        assert_eq!(line.stream, LogStream::Stderr);

        // A long line written in pieces arrives whole.
        let long = vec![b'z'; MAX_ENTRY_BYTES + 10];
        writer
            .write_entry(t0(), LogStream::Stdout, Tag::Partial, &long[..100])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        writer
            .write(t0(), LogStream::Stdout, &long[100..])
            .await
            .unwrap();
        assert_eq!(next(&mut lines).await.unwrap().unwrap().content, long);

        // The last lines written before the container ends still arrive.
        writer
            .write(t0(), LogStream::Stdout, b"last")
            .await
            .unwrap();
        running.store(false, Ordering::SeqCst);
        assert_eq!(next(&mut lines).await.unwrap().unwrap().content, "last");
        assert!(next(&mut lines).await.is_none());
    }

    #[tokio::test]
    async fn follow_of_missing_file_ends_when_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = follow(dir.path().join("0.log"), LogOptions::default(), || false);
        assert!(next(&mut lines).await.is_none());
    }

    #[tokio::test]
    async fn follow_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 200, 3).await.unwrap();
        writer
            .write(t0(), LogStream::Stdout, b"line 0")
            .await
            .unwrap();
        let (running, is_running) = flag(true);
        let mut lines = follow(path.clone(), LogOptions::default(), is_running);
        assert_eq!(next(&mut lines).await.unwrap().unwrap().content, "line 0");
        for i in 1..30 {
            writer
                .write(t0(), LogStream::Stdout, format!("line {i}").as_bytes())
                .await
                .unwrap();
            let line = next(&mut lines).await.unwrap().unwrap();
            assert_eq!(line.content, format!("line {i}"));
        }
        assert!(rotated(&path, 2).exists(), "the file was rotated");

        // Lines across two rotations between two looks (4 entries fit in a file).
        for i in 30..38 {
            writer
                .write(t0(), LogStream::Stdout, format!("line {i}").as_bytes())
                .await
                .unwrap();
        }
        running.store(false, Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(line) = next(&mut lines).await {
            rest.push(line.unwrap().content);
        }
        let expected: Vec<Bytes> = (30..38).map(|i| Bytes::from(format!("line {i}"))).collect();
        assert_eq!(rest, expected);
    }
}
