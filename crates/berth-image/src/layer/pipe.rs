//! The threads that feed the tar parser.
//!
//! Three stages, so that on a multi-core machine decompression (the slowest stage) runs alone
//! on its core:
//! - a reader thread reads the blob and hashes it (blob digest and size, progress);
//! - a decoder thread decompresses and does nothing else;
//! - the parser's own thread hashes the uncompressed stream (the diff id) as it reads it.
//!
//! The stages pass fixed 1 MiB buffers through bounded channels and recycle them, so memory
//! stays flat whatever the layer size.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use super::Compression;
use crate::digest::{Digest, Hasher};

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

type Msg = io::Result<(Vec<u8>, usize)>;

/// Digests of a layer stream.
pub(crate) struct Hashes {
    pub blob_digest: Option<Digest>,
    pub blob_size: u64,
    pub diff_id: Option<Digest>,
    pub tar_size: u64,
}

/// The sending end of a stage: hands out recycled buffers and sends filled ones.
struct ChunkSender {
    tx: SyncSender<Msg>,
    free: Receiver<Vec<u8>>,
    allocated: usize,
}

impl ChunkSender {
    fn buffer(&mut self) -> Vec<u8> {
        match self.free.try_recv() {
            Ok(b) => b,
            Err(_) if self.allocated < IN_FLIGHT + 2 => {
                self.allocated += 1;
                vec![0; CHUNK]
            }
            Err(_) => self.free.recv().unwrap_or_else(|_| vec![0; CHUNK]),
        }
    }

    /// Send `buf[..n]`; false when the receiving stage is gone.
    fn send(&self, buf: Vec<u8>, n: usize) -> bool {
        self.tx.send(Ok((buf, n))).is_ok()
    }

    fn fail(&self, e: &io::Error) {
        let _ = self.tx.send(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

/// Reads the chunks another stage sends, counting and (when asked to) hashing them.
pub(crate) struct ChannelReader {
    rx: Receiver<Msg>,
    free: Sender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    total: u64,
    hasher: Option<Hasher>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.len {
            match self.rx.recv() {
                Ok(Ok((next, n))) => {
                    self.total += n as u64;
                    if let Some(h) = &mut self.hasher {
                        h.update(&next[..n]);
                    }
                    let old = std::mem::replace(&mut self.cur, next);
                    self.len = n;
                    self.pos = 0;
                    if !old.is_empty() {
                        let _ = self.free.send(old);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.cur[self.pos..self.len])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

fn channel(hash: bool) -> (ChunkSender, ChannelReader) {
    let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::channel();
    (
        ChunkSender {
            tx,
            free: free_rx,
            allocated: 0,
        },
        ChannelReader {
            rx,
            free: free_tx,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            total: 0,
            hasher: hash.then(Hasher::new),
        },
    )
}

/// Read into `buf` until it is full or `r` ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn stopped(what: &str) -> io::Error {
    io::Error::other(format!("the layer {what} stopped"))
}

fn read_blob<R: Read>(
    mut blob: R,
    progress: &(dyn Fn(u64) + Sync),
    out: &mut ChunkSender,
    hash: bool,
) -> io::Result<(Option<Digest>, u64)> {
    let mut hasher = hash.then(Hasher::new);
    let mut total = 0u64;
    loop {
        let mut buf = out.buffer();
        let n = fill(&mut blob, &mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(h) = &mut hasher {
            h.update(&buf[..n]);
        }
        total += n as u64;
        progress(total);
        if !out.send(buf, n) {
            return Err(stopped("decoder"));
        }
    }
    Ok((hasher.map(Hasher::finish), total))
}

fn decode(
    mut input: ChannelReader,
    out: &mut ChunkSender,
    declared: Option<Compression>,
) -> io::Result<()> {
    let compression = Compression::decide(declared, input.fill_buf()?);
    {
        let mut gz;
        let mut zs;
        let decoder: &mut dyn Read = match compression {
            Compression::Gzip => {
                gz = Gunzip::new(&mut input)?;
                &mut gz
            }
            Compression::Zstd => {
                zs = zstd::stream::read::Decoder::with_buffer(&mut input)?;
                &mut zs
            }
            Compression::None => &mut input,
        };
        loop {
            let mut buf = out.buffer();
            let n = fill(decoder, &mut buf)?;
            if n == 0 {
                break;
            }
            if !out.send(buf, n) {
                // The tar reader stopped on an error: no need to go on.
                return Err(stopped("reader"));
            }
        }
    }
    // Let the reader finish so the blob digest and size cover the whole blob.
    io::copy(&mut input, &mut io::sink())?;
    Ok(())
}

/// Decodes concatenated gzip members with raw inflate. The CRC-32 each member carries is not
/// computed (it would cost a tenth of the decoder's time): the layer's diff id, a sha256 of
/// the whole output, is verified instead. Each member's length field is still checked.
struct Gunzip<R: BufRead> {
    member: Option<flate2::bufread::DeflateDecoder<R>>,
    out: u64,
}

fn bad_gzip(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid gzip stream: {what}"),
    )
}

fn skip_cstr(r: &mut impl BufRead) -> io::Result<()> {
    let mut sink = Vec::new();
    r.read_until(0, &mut sink)?;
    if sink.last() != Some(&0) {
        return Err(bad_gzip("truncated header"));
    }
    Ok(())
}

/// Read a gzip member header (RFC 1952, section 2.3).
fn gzip_header(r: &mut impl BufRead) -> io::Result<()> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let mut h = [0u8; 10];
    r.read_exact(&mut h)
        .map_err(|_| bad_gzip("truncated header"))?;
    if h[..3] != [0x1f, 0x8b, 8] {
        return Err(bad_gzip("bad magic or method"));
    }
    let flags = h[3];
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        let len = u64::from(u16::from_le_bytes(len));
        if io::copy(&mut r.take(len), &mut io::sink())? != len {
            return Err(bad_gzip("truncated extra field"));
        }
    }
    if flags & FNAME != 0 {
        skip_cstr(r)?;
    }
    if flags & FCOMMENT != 0 {
        skip_cstr(r)?;
    }
    if flags & FHCRC != 0 {
        r.read_exact(&mut [0u8; 2])?;
    }
    Ok(())
}

impl<R: BufRead> Gunzip<R> {
    fn new(mut r: R) -> io::Result<Self> {
        gzip_header(&mut r)?;
        Ok(Self {
            member: Some(flate2::bufread::DeflateDecoder::new(r)),
            out: 0,
        })
    }
}

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = &mut self.member else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.out += n as u64;
                return Ok(n);
            }
            // The member's deflate stream ended: its trailer, then maybe another member.
            let mut r = self.member.take().expect("checked above").into_inner();
            let mut trailer = [0u8; 8];
            r.read_exact(&mut trailer)
                .map_err(|_| bad_gzip("truncated trailer"))?;
            let isize = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
            if isize != self.out as u32 {
                return Err(bad_gzip("length does not match the trailer"));
            }
            if r.fill_buf()?.is_empty() {
                return Ok(0);
            }
            gzip_header(&mut r)?;
            self.out = 0;
            self.member = Some(flate2::bufread::DeflateDecoder::new(r));
        }
    }
}

/// The running reader and decoder threads of one layer, and the stream they produce.
pub(crate) struct Pipeline<'scope> {
    /// The uncompressed tar stream; hashed as it is read.
    pub reader: ChannelReader,
    read: ScopedJoinHandle<'scope, io::Result<(Option<Digest>, u64)>>,
    decode: ScopedJoinHandle<'scope, io::Result<()>>,
}

impl Pipeline<'_> {
    /// Stop the threads (the reader must have been read to its end for the diff id to cover
    /// the whole stream) and return the digests.
    pub(crate) fn finish(self) -> io::Result<Hashes> {
        let Pipeline {
            reader,
            read,
            decode,
        } = self;
        let (hasher, tar_size) = (reader.hasher.clone(), reader.total);
        // Dropping the reader stops a decoder that is still sending (after a parse error).
        drop(reader);
        let panicked = |what| io::Error::other(format!("layer {what} thread panicked"));
        let decoded = decode.join().unwrap_or_else(|_| Err(panicked("decoder")));
        let read = read.join().unwrap_or_else(|_| Err(panicked("reader")));
        decoded?;
        let (blob_digest, blob_size) = read?;
        Ok(Hashes {
            blob_digest,
            blob_size,
            diff_id: hasher.map(Hasher::finish),
            tar_size,
        })
    }
}

/// Start the reader and decoder threads for `blob` in scope `s`, hashing the blob and the tar
/// stream when asked to.
pub(crate) fn spawn<'scope, 'env, R: Read + Send + 'env>(
    s: &'scope Scope<'scope, 'env>,
    blob: R,
    progress: &'env (dyn Fn(u64) + Sync),
    declared: Option<Compression>,
    hash_blob: bool,
    hash_tar: bool,
) -> Pipeline<'scope> {
    let (mut raw_tx, raw_rx) = channel(false);
    let (mut out_tx, reader) = channel(hash_tar);
    let read = std::thread::Builder::new()
        .name("layer-read".into())
        .spawn_scoped(s, move || {
            let res = read_blob(blob, progress, &mut raw_tx, hash_blob);
            if let Err(e) = &res {
                raw_tx.fail(e);
            }
            res
        })
        .expect("spawning the layer reader thread");
    let decode = std::thread::Builder::new()
        .name("layer-decode".into())
        .spawn_scoped(s, move || {
            let res = decode(raw_rx, &mut out_tx, declared);
            if let Err(e) = &res {
                out_tx.fail(e);
            }
            res
        })
        .expect("spawning the layer decoder thread");
    Pipeline {
        reader,
        read,
        decode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new();
        if let Some(n) = name {
            b = b.filename(n).comment("c").extra(vec![1, 2, 3]);
        }
        let mut e = b.write(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Gunzip::new(data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn gunzip_members_and_header_fields() {
        let a: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut two = gz(&a, Some("a.tar"));
        two.extend(gz(b"second member", None));
        let mut want = a.clone();
        want.extend_from_slice(b"second member");
        assert_eq!(gunzip(&two).unwrap(), want);
        assert_eq!(gunzip(&gz(b"", None)).unwrap(), b"");
    }

    #[test]
    fn gunzip_refuses_damage() {
        let good = gz(b"hello hello hello", None);
        let mut bad_len = good.clone();
        let n = bad_len.len();
        bad_len[n - 1] ^= 1;
        assert!(gunzip(&bad_len).is_err());
        assert!(gunzip(&good[..good.len() - 3]).is_err());
        assert!(gunzip(&good[..good.len() / 2]).is_err());
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        assert!(gunzip(&trailing).is_err());
        assert!(gunzip(b"\x1f\x8b\x07\0\0\0\0\0\0\0").is_err());
    }
}
