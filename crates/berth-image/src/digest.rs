//! Content digests (`sha256:<hex>`) and hashing readers/writers.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Error parsing or verifying a digest.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The text is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    Invalid(String),
    /// Content hashed to another digest than expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// The digest the content should have.
        expected: Digest,
        /// The digest the content has.
        actual: Digest,
    },
    /// Content had another size than expected.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    Size {
        /// The digest of the content.
        digest: Digest,
        /// The expected size.
        expected: u64,
        /// The actual size.
        actual: u64,
    },
}

/// A sha256 content digest.
///
/// ```
/// let d: berth_image::Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
/// assert_eq!(d, berth_image::Digest::of(b""));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Digest of a byte slice.
    pub fn of(data: &[u8]) -> Self {
        Self::from_bytes(&Sha256::digest(data))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push(HEX[(b >> 4) as usize] as char);
            hex.push(HEX[(b & 15) as usize] as char);
        }
        Self { hex }
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Check that `data` hashes to this digest.
    pub fn verify(&self, data: &[u8]) -> Result<(), DigestError> {
        let actual = Self::of(data);
        if &actual == self {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.clone(),
                actual,
            })
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError::Invalid(s.to_owned()))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Invalid(s.to_owned()));
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Running sha256 over bytes passed through, plus a byte count.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether no byte was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_bytes(&self.inner.finalize())
    }
}

/// A reader that hashes what is read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }
    /// Whether nothing was read yet.
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }
    /// Read the rest (so the digest covers the whole stream) and return digest and size.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let len = self.hasher.len();
        Ok((self.hasher.finish(), len))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes what is written through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// Return the inner writer, the digest and size of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let d = Digest::of(b"abc");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert!("sha256:xyz".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
        assert!(d.verify(b"abd").is_err());
    }
}
