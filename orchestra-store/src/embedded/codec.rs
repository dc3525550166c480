//! The on-disk encoding of journal records and checkpoint images.
//!
//! Everything is little-endian and length-prefixed. A journal **frame** is
//!
//! ```text
//! u32 payload length | u32 CRC-32C of (sequence, payload) | u64 sequence | payload
//! ```
//!
//! and a record's payload starts with a tag byte (1 revision, 2 lease, 3 lease end, 4 compact).
//! An **image** file is `MAGIC`, then a `u64` length, the payload and a `u32` CRC-32C of the
//! payload. Nothing is trusted on reading: every length is checked against what is left, every
//! checksum verified, every count bounded by the bytes that could hold it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use orchestra_core::store::journal::{Image, LeaseImage, Record, VersionImage};
use orchestra_core::store::{Event, EventKind, KeyValue};

/// The first bytes of an image file.
pub(crate) const IMAGE_MAGIC: &[u8; 8] = b"ORCHIMG1";

/// Bytes of a frame's header.
pub(crate) const FRAME_HEADER: usize = 16;

/// The largest payload a frame may claim (a transaction of a few hundred megabytes).
pub(crate) const MAX_FRAME: usize = 1 << 30;

const TAG_REVISION: u8 = 1;
const TAG_LEASE: u8 = 2;
const TAG_LEASE_END: u8 = 3;
const TAG_COMPACT: u8 = 4;

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

fn crc(sequence: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&sequence.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one framed record to `out`.
pub(crate) fn encode_frame(sequence: u64, record: &Record, out: &mut Vec<u8>) {
    let mut payload = Vec::new();
    encode_record(record, &mut payload);
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc(sequence, &payload).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&payload);
}

/// What a look at the bytes at a frame's position found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole, intact frame: its sequence, record, and encoded length.
    Record(u64, Record, usize),
    /// Nothing more (the end of the file, or zeros a crash left after the last frame).
    End,
    /// A frame that runs past the end of the file (a write cut short).
    Torn,
    /// A frame whose checksum or content is wrong.
    Corrupt(String),
}

/// Reads the frame at the start of `bytes`.
pub(crate) fn decode_frame(bytes: &[u8]) -> Frame {
    if bytes.iter().all(|&b| b == 0) {
        return Frame::End;
    }
    if bytes.len() < FRAME_HEADER {
        return Frame::Torn;
    }
    let mut reader = Reader::new(bytes);
    let (Ok(length), Ok(checksum), Ok(sequence)) = (reader.u32(), reader.u32(), reader.u64())
    else {
        return Frame::Torn;
    };
    let length = length as usize;
    if length > MAX_FRAME {
        return Frame::Corrupt(format!("a frame claims {length} bytes"));
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + length) else {
        return Frame::Torn;
    };
    if crc(sequence, payload) != checksum {
        return Frame::Corrupt("checksum mismatch".into());
    }
    match decode_record(payload) {
        Ok(record) => Frame::Record(sequence, record, FRAME_HEADER + length),
        Err(DecodeError(reason)) => Frame::Corrupt(reason),
    }
}

fn put_str(value: &str, out: &mut Vec<u8>) {
    put_bytes(value.as_bytes(), out);
}

fn put_bytes(value: &[u8], out: &mut Vec<u8>) {
    let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(value);
}

fn put_i64(value: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(value: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(value: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_len(length: usize, out: &mut Vec<u8>) {
    put_u32(u32::try_from(length).unwrap_or(u32::MAX), out);
}

fn put_lease(lease: &LeaseImage, out: &mut Vec<u8>) {
    put_i64(lease.id, out);
    put_u64(u64::try_from(lease.ttl.as_nanos()).unwrap_or(u64::MAX), out);
    let since_epoch = lease
        .renewed_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    put_u64(
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        out,
    );
}

fn encode_record(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Revision { revision, events } => {
            out.push(TAG_REVISION);
            put_i64(*revision, out);
            put_len(events.len(), out);
            for event in events {
                out.push(match event.kind {
                    EventKind::Put => 0,
                    EventKind::Delete => 1,
                });
                put_str(&event.kv.key, out);
                put_bytes(&event.kv.value, out);
                put_i64(event.kv.create_revision, out);
                put_i64(event.kv.version, out);
                put_i64(event.kv.lease.unwrap_or(0), out);
            }
        }
        Record::Lease(lease) => {
            out.push(TAG_LEASE);
            put_lease(lease, out);
        }
        Record::LeaseEnd(id) => {
            out.push(TAG_LEASE_END);
            put_i64(*id, out);
        }
        Record::Compact(revision) => {
            out.push(TAG_COMPACT);
            put_i64(*revision, out);
        }
    }
}

/// A cursor over bytes that never reads past their end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| DecodeError("truncated".into()))?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| DecodeError("a key is not UTF-8".into()))
    }

    /// A count of items each at least `minimum` bytes long (so a corrupt count cannot make us
    /// allocate more than the input could hold).
    fn count(&mut self, minimum: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(minimum.max(1)) > self.bytes.len() - self.position {
            return Err(DecodeError(format!("a count of {count} items cannot fit")));
        }
        Ok(count)
    }

    fn lease(&mut self) -> Result<LeaseImage, DecodeError> {
        let id = self.i64()?;
        let ttl = Duration::from_nanos(self.u64()?);
        let renewed_at = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_nanos(self.u64()?))
            .ok_or_else(|| DecodeError("a lease renewal time is out of range".into()))?;
        Ok(LeaseImage {
            id,
            ttl,
            renewed_at,
        })
    }

    fn finished(&self) -> Result<(), DecodeError> {
        if self.position == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes".into()))
        }
    }
}

fn lease_of(id: i64) -> Option<i64> {
    (id != 0).then_some(id)
}

fn decode_record(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut reader = Reader::new(payload);
    let record = match reader.u8()? {
        TAG_REVISION => {
            let revision = reader.i64()?;
            let count = reader.count(33)?;
            let mut events = Vec::with_capacity(count);
            for _ in 0..count {
                let kind = match reader.u8()? {
                    0 => EventKind::Put,
                    1 => EventKind::Delete,
                    other => return Err(DecodeError(format!("unknown event kind {other}"))),
                };
                let key = reader.string()?;
                let value = Bytes::copy_from_slice(reader.bytes()?);
                let create_revision = reader.i64()?;
                let version = reader.i64()?;
                let lease = lease_of(reader.i64()?);
                events.push(Event {
                    kind,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision,
                        mod_revision: revision,
                        version,
                        lease,
                    },
                    prev_kv: None,
                });
            }
            Record::Revision { revision, events }
        }
        TAG_LEASE => Record::Lease(reader.lease()?),
        TAG_LEASE_END => Record::LeaseEnd(reader.i64()?),
        TAG_COMPACT => Record::Compact(reader.i64()?),
        other => return Err(DecodeError(format!("unknown record tag {other}"))),
    };
    reader.finished()?;
    Ok(record)
}

/// Encodes an image file: magic, length, payload, checksum.
pub(crate) fn encode_image(image: &Image) -> Vec<u8> {
    let mut payload = Vec::new();
    put_i64(image.revision, &mut payload);
    put_i64(image.compacted, &mut payload);
    put_i64(image.next_lease, &mut payload);
    put_len(image.versions.len(), &mut payload);
    for version in &image.versions {
        put_str(&version.key, &mut payload);
        put_i64(version.mod_revision, &mut payload);
        put_i64(version.create_revision, &mut payload);
        put_i64(version.version, &mut payload);
        put_i64(version.lease.unwrap_or(0), &mut payload);
        match &version.value {
            Some(value) => {
                payload.push(1);
                put_bytes(value, &mut payload);
            }
            None => payload.push(0),
        }
        put_u32(version.ordinal, &mut payload);
    }
    put_len(image.leases.len(), &mut payload);
    for lease in &image.leases {
        put_lease(lease, &mut payload);
    }
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(IMAGE_MAGIC);
    put_u64(payload.len() as u64, &mut out);
    out.extend_from_slice(&payload);
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out
}

/// Decodes an image file, checking its magic, length and checksum.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<Image, DecodeError> {
    let mut reader = Reader::new(bytes);
    if reader.take(IMAGE_MAGIC.len())? != IMAGE_MAGIC {
        return Err(DecodeError("not an Orchestra store image".into()));
    }
    let length = usize::try_from(reader.u64()?).map_err(|_| DecodeError("too long".into()))?;
    let payload = reader.take(length)?;
    let checksum = reader.u32()?;
    reader.finished()?;
    if crc32fast::hash(payload) != checksum {
        return Err(DecodeError("checksum mismatch".into()));
    }
    let mut reader = Reader::new(payload);
    let revision = reader.i64()?;
    let compacted = reader.i64()?;
    let next_lease = reader.i64()?;
    let count = reader.count(41)?;
    let mut versions = Vec::with_capacity(count);
    for _ in 0..count {
        let key = reader.string()?;
        let mod_revision = reader.i64()?;
        let create_revision = reader.i64()?;
        let version = reader.i64()?;
        let lease = lease_of(reader.i64()?);
        let value = match reader.u8()? {
            1 => Some(Bytes::copy_from_slice(reader.bytes()?)),
            0 => None,
            other => return Err(DecodeError(format!("unknown value marker {other}"))),
        };
        let ordinal = reader.u32()?;
        versions.push(VersionImage {
            key,
            mod_revision,
            create_revision,
            version,
            lease,
            value,
            ordinal,
        });
    }
    let count = reader.count(24)?;
    let mut leases = Vec::with_capacity(count);
    for _ in 0..count {
        leases.push(reader.lease()?);
    }
    reader.finished()?;
    Ok(Image {
        revision,
        compacted,
        next_lease,
        versions,
        leases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        vec![
            Record::Revision {
                revision: 7,
                events: vec![
                    Event {
                        kind: EventKind::Put,
                        kv: KeyValue {
                            key: "/a".into(),
                            value: Bytes::from_static(b"value"),
                            create_revision: 3,
                            mod_revision: 7,
                            version: 2,
                            lease: Some(5),
                        },
                        prev_kv: None,
                    },
                    Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: "/b".into(),
                            value: Bytes::new(),
                            create_revision: 4,
                            mod_revision: 7,
                            version: 0,
                            lease: None,
                        },
                        prev_kv: None,
                    },
                ],
            },
            Record::Lease(LeaseImage {
                id: 5,
                ttl: Duration::from_secs(10),
                renewed_at: SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(1_700_000_000_123_456_789),
            }),
            Record::LeaseEnd(5),
            Record::Compact(6),
        ]
    }

    #[test]
    fn frames_round_trip() {
        let mut bytes = Vec::new();
        for (i, record) in records().iter().enumerate() {
            encode_frame(i as u64 + 1, record, &mut bytes);
        }
        let mut position = 0;
        let mut decoded = Vec::new();
        loop {
            match decode_frame(&bytes[position..]) {
                Frame::Record(sequence, record, length) => {
                    decoded.push((sequence, record));
                    position += length;
                }
                Frame::End => break,
                other => panic!("{other:?}"),
            }
        }
        let expected: Vec<(u64, Record)> = records()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn damage_is_detected() {
        let mut bytes = Vec::new();
        encode_frame(1, &records()[0], &mut bytes);
        assert_eq!(decode_frame(&bytes[..bytes.len() - 1]), Frame::Torn);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(decode_frame(&flipped), Frame::Corrupt(_)));
        assert_eq!(decode_frame(&[0; 64]), Frame::End);
        assert_eq!(decode_frame(&bytes[..5]), Frame::Torn);
    }

    #[test]
    fn images_round_trip_and_refuse_damage() {
        let image = Image {
            revision: 9,
            compacted: 4,
            next_lease: 3,
            versions: vec![VersionImage {
                key: "/a".into(),
                mod_revision: 5,
                create_revision: 5,
                version: 1,
                lease: None,
                value: Some(Bytes::from_static(b"x")),
                ordinal: 0,
            }],
            leases: vec![LeaseImage {
                id: 2,
                ttl: Duration::from_secs(3),
                renewed_at: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
            }],
        };
        let bytes = encode_image(&image);
        assert_eq!(decode_image(&bytes), Ok(image));
        assert!(decode_image(&bytes[..bytes.len() - 1]).is_err());
        let mut flipped = bytes;
        flipped[20] ^= 1;
        assert!(decode_image(&flipped).is_err());
    }
}
