//! Bytes waiting for a non-blocking peer: an attached client's output, the process's input.
//!
//! The monitor never blocks on a peer: what a write does not take now waits here and goes
//! out when the peer's fd polls writable. The caller bounds the queue (the process's output
//! is not read while an attached client's queue is full, nor clients' input while the
//! process's stdin queue is).

use std::collections::VecDeque;
use std::io;

/// Queued chunks are merged up to this size (a terminal sends its input a byte at a time).
const CHUNK: usize = 64 * 1024;

/// A FIFO of bytes for one fd.
#[derive(Debug, Default)]
pub struct Backlog {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already written.
    head: usize,
    len: usize,
}

impl Backlog {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue a copy of `data` after what waits.
    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // The front chunk may be partly written: only later chunks grow.
        let grows = self.chunks.len() > 1;
        match self.chunks.back_mut() {
            Some(last) if grows && last.len() + data.len() <= CHUNK => last.extend_from_slice(data),
            _ => self.chunks.push_back(data.to_vec()),
        }
    }

    /// Drop everything that waits.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }

    /// Hand queued bytes to `write` (a non-blocking write of a prefix of its argument) until
    /// the queue is empty or the write would block; returns the bytes written. An error other
    /// than `WouldBlock`/`Interrupted` (the peer is gone: `EPIPE`, `EIO`) is returned, with the
    /// queue left as it was after the last successful write.
    pub fn flush(
        &mut self,
        mut write: impl FnMut(&[u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut total = 0;
        while let Some(front) = self.chunks.front() {
            match write(&front[self.head..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.len -= n;
                    self.head += n;
                    if self.head == front.len() {
                        self.chunks.pop_front();
                        self.head = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn keeps_order_and_stops_when_the_peer_is_full() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut q = Backlog::default();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(1000) {
            q.push(piece);
        }
        assert_eq!(q.len(), data.len());
        // The socket takes some, then would block: the rest waits.
        let first = q.flush(|buf| (&a).write(buf)).unwrap();
        assert!(first > 0 && first < data.len(), "{first}");
        assert_eq!(q.len(), data.len() - first);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        while got.len() < data.len() {
            let n = b.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            q.flush(|buf| (&a).write(buf)).unwrap();
        }
        assert!(q.is_empty());
        assert!(got == data, "bytes out of order");
    }

    #[test]
    fn a_gone_peer_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        drop(b);
        let mut q = Backlog::default();
        q.push(b"hello");
        let e = q.flush(|buf| (&a).write(buf)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(q.len(), 5);
        q.clear();
        assert!(q.is_empty());
    }
}
