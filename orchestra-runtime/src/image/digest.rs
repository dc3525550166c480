//! Content digests (`sha256:<64 lowercase hex digits>`), computed while the data streams by.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// The only digest algorithm images use in practice, and the only one the store accepts.
pub(crate) const SHA256: &str = "sha256";

/// A sha256 content digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    /// Reads `sha256:<hex>`; `None` for anything else (another algorithm, a short or upper-case
    /// hex part).
    pub(crate) fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix(SHA256)?.strip_prefix(':')?;
        Digest::from_hex(hex)
    }

    /// Reads the 64 hex digits alone.
    pub(crate) fn from_hex(hex: &str) -> Option<Digest> {
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `data`.
    pub(crate) fn of(data: &[u8]) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(data);
        Digest::from_hasher(hasher)
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in hasher.finalize().iter() {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
        }
        Digest { hex }
    }

    /// The 64 hex digits, without the algorithm (the name of the blob file).
    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", self.hex)
    }
}

/// A reader that hashes and counts what passes through it.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Reads what is left to the end, so that the digest covers everything.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    /// The digest and length of what was read.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_print_and_parse() {
        let digest = Digest::of(b"");
        assert_eq!(
            digest.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&digest.to_string()), Some(digest.clone()));
        assert_eq!(Digest::from_hex(digest.hex()), Some(digest));
        assert_eq!(Digest::parse("sha512:00"), None);
        assert_eq!(Digest::parse("sha256:E3B0"), None);
        assert_eq!(Digest::from_hex(&"A".repeat(64)), None);
    }

    #[test]
    fn the_hashing_reader_covers_all_it_reads() -> io::Result<()> {
        let mut reader = HashingReader::new(&b"hello world"[..]);
        let mut first = [0; 5];
        reader.read_exact(&mut first)?;
        reader.drain()?;
        let (digest, len) = reader.finish();
        assert_eq!(len, 11);
        assert_eq!(digest, Digest::of(b"hello world"));
        Ok(())
    }
}
