//! The decompression thread and the channel reader that feeds the tar parser.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use super::Compression;
use crate::digest::{Digest, Hasher};

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

/// Digests computed by the decoder thread.
pub(crate) struct Hashes {
    pub blob_digest: Digest,
    pub blob_size: u64,
    pub diff_id: Digest,
    pub tar_size: u64,
}

struct BlobReader<'p, R> {
    inner: R,
    hasher: Hasher,
    progress: &'p (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for BlobReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        (self.progress)(self.hasher.len());
        Ok(n)
    }
}

/// Reads the chunks the decoder thread sends.
pub(crate) struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    free: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
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
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let old = std::mem::replace(&mut self.cur, next);
                    self.pos = 0;
                    let _ = self.free.send(old);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.cur[self.pos..])
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

fn fill(r: &mut dyn Read, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.resize(CHUNK, 0);
    let mut n = 0;
    while n < CHUNK {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(n);
                return Err(e);
            }
        }
    }
    buf.truncate(n);
    Ok(())
}

fn decode<R: Read>(
    blob: R,
    progress: &(dyn Fn(u64) + Sync),
    tx: &SyncSender<io::Result<Vec<u8>>>,
    free: &Receiver<Vec<u8>>,
) -> io::Result<Hashes> {
    let mut src = BufReader::with_capacity(
        256 << 10,
        BlobReader {
            inner: blob,
            hasher: Hasher::new(),
            progress,
        },
    );
    let compression = Compression::detect(src.fill_buf()?);
    let mut tar_hasher = Hasher::new();
    let mut gz;
    let mut zs;
    let decoder: &mut dyn Read = match compression {
        Compression::Gzip => {
            gz = flate2::bufread::MultiGzDecoder::new(&mut src);
            &mut gz
        }
        Compression::Zstd => {
            zs = zstd::stream::read::Decoder::with_buffer(&mut src)?;
            &mut zs
        }
        Compression::None => &mut src,
    };
    let mut allocated = 0;
    loop {
        let mut buf = match free.try_recv() {
            Ok(b) => b,
            Err(_) if allocated < IN_FLIGHT + 2 => {
                allocated += 1;
                Vec::with_capacity(CHUNK)
            }
            Err(_) => free.recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK)),
        };
        fill(decoder, &mut buf)?;
        if buf.is_empty() {
            break;
        }
        tar_hasher.update(&buf);
        if tx.send(Ok(buf)).is_err() {
            // The tar reader stopped on an error: no need to go on.
            return Err(io::Error::other("layer reader stopped"));
        }
    }
    let blob = src.into_inner();
    let blob_size = blob.hasher.len();
    Ok(Hashes {
        blob_digest: blob.hasher.finish(),
        blob_size,
        tar_size: tar_hasher.len(),
        diff_id: tar_hasher.finish(),
    })
}

/// Start the decoder thread for `blob` in scope `s`.
pub(crate) fn spawn_decoder<'scope, 'env, R: Read + Send + 'env>(
    s: &'scope Scope<'scope, 'env>,
    blob: R,
    progress: &'env (dyn Fn(u64) + Sync),
) -> (ChannelReader, ScopedJoinHandle<'scope, io::Result<Hashes>>) {
    let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("layer-decode".into())
        .spawn_scoped(s, move || {
            let res = decode(blob, progress, &tx, &free_rx);
            if let Err(e) = &res {
                let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            res
        })
        .expect("spawning the layer decoder thread");
    (
        ChannelReader {
            rx,
            free: free_tx,
            cur: Vec::new(),
            pos: 0,
        },
        handle,
    )
}
