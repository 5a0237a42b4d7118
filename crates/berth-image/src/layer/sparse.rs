//! Files stored in GNU tar's PAX sparse formats (`tar --sparse --format=posix`), which Go's
//! archive/tar, so docker, containerd and umoci, expands: versions 0.0 (repeated
//! `GNU.sparse.offset`/`GNU.sparse.numbytes` records), 0.1 (`GNU.sparse.map`) and 1.0 (the
//! map leads the entry's data). Such an entry is a regular file whose header names a
//! placeholder (`GNUSparseFile.PID/NAME`); the real name is `GNU.sparse.name` and the real
//! size `GNU.sparse.size` or `GNU.sparse.realsize`. The old GNU format (type `S`) is read by
//! the `tar` crate itself.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// The sparse description of one entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PaxSparse {
    /// The file's real name (`GNU.sparse.name`), when given.
    pub(crate) name: Option<Vec<u8>>,
    /// The file's real size in bytes.
    pub(crate) real_size: u64,
    /// `(offset, length)` of each stored fragment (versions 0.x); `None` for 1.0, whose map
    /// is read from the entry's data.
    map: Option<Vec<(u64, u64)>>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("GNU sparse file: {what}"),
    )
}

fn number(v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("a number is not a number"))
}

/// The sparse description in the PAX records of `e`, or `None` for an ordinary entry (also
/// for an unknown sparse version, which Go's reader leaves as it is, as here).
pub(crate) fn pax_sparse<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Option<PaxSparse>> {
    let Some(pax) = e.pax_extensions()? else {
        return Ok(None);
    };
    let (mut major, mut minor, mut name, mut size) = (None, None, None, None);
    let (mut map, mut offsets) = (None, Vec::new());
    for ext in pax {
        let ext = ext?;
        let v = ext.value_bytes();
        match ext.key_bytes() {
            b"GNU.sparse.major" => major = Some(v.to_vec()),
            b"GNU.sparse.minor" => minor = Some(v.to_vec()),
            b"GNU.sparse.name" => name = Some(v.to_vec()),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => size = Some(number(v)?),
            b"GNU.sparse.map" => {
                let nums = v
                    .split(|&b| b == b',')
                    .map(number)
                    .collect::<io::Result<Vec<u64>>>()?;
                if nums.len() % 2 != 0 {
                    return Err(bad("GNU.sparse.map has an odd count"));
                }
                map = Some(nums.chunks(2).map(|c| (c[0], c[1])).collect::<Vec<_>>());
            }
            b"GNU.sparse.offset" => offsets.push((number(v)?, None)),
            b"GNU.sparse.numbytes" => match offsets.last_mut() {
                Some((_, n @ None)) => *n = Some(number(v)?),
                _ => return Err(bad("GNU.sparse.numbytes without its offset")),
            },
            _ => {}
        }
    }
    if map.is_none() && !offsets.is_empty() {
        map = Some(
            offsets
                .into_iter()
                .map(|(o, n)| {
                    n.map(|n| (o, n))
                        .ok_or_else(|| bad("an offset without length"))
                })
                .collect::<io::Result<_>>()?,
        );
    }
    let v1 = match (major.as_deref(), minor.as_deref()) {
        (Some(b"1"), Some(b"0")) => true,
        (Some(b"0"), Some(b"0" | b"1")) | (None, None) => false,
        _ => return Ok(None),
    };
    if !v1 && map.is_none() {
        return Ok(None);
    }
    let real_size = size.ok_or_else(|| bad("no real size"))?;
    Ok(Some(PaxSparse {
        name,
        real_size,
        map: if v1 { None } else { map },
    }))
}

/// Read the 1.0 map that leads the data: decimal numbers, one a line (the count, then an
/// offset and a length per fragment), padded to a 512-byte block.
fn read_map_1x0(r: &mut impl Read) -> io::Result<Vec<(u64, u64)>> {
    let mut block = [0u8; 512];
    let mut nums: Vec<u64> = Vec::new();
    let mut cur = Vec::new();
    let mut want: Option<u64> = None;
    loop {
        r.read_exact(&mut block)
            .map_err(|_| bad("the map is cut short"))?;
        for &b in &block {
            if b != b'\n' {
                if cur.len() > 20 {
                    return Err(bad("a map number is too long"));
                }
                cur.push(b);
                continue;
            }
            let n = number(&cur)?;
            cur.clear();
            match want {
                None => want = Some(n),
                Some(_) => nums.push(n),
            }
            if want.is_some_and(|w| nums.len() as u64 == w.saturating_mul(2)) {
                return Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect());
            }
        }
    }
}

/// Write the sparse entry `r` (its stored data) into the empty file `f`, holes as holes.
/// Fragments must be in order, not overlap and end within the real size (as Go checks).
pub(crate) fn write(s: &PaxSparse, r: &mut impl Read, f: &File, buf: &mut [u8]) -> io::Result<()> {
    let map = match &s.map {
        Some(m) => m.clone(),
        None => read_map_1x0(r)?,
    };
    let mut end = 0u64;
    for &(off, len) in &map {
        let stop = off
            .checked_add(len)
            .filter(|&stop| off >= end && stop <= s.real_size)
            .ok_or_else(|| bad("fragments overlap or pass the real size"))?;
        let mut done = 0u64;
        while done < len {
            let n = buf.len().min((len - done) as usize);
            r.read_exact(&mut buf[..n]).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "GNU sparse file: data cut short",
                )
            })?;
            f.write_all_at(&buf[..n], off + done)?;
            done += n as u64;
        }
        end = stop;
    }
    f.set_len(s.real_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_1x0_is_read_to_its_block_end() {
        let mut data = b"2\n0\n3\n10\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcde");
        let mut r = &data[..];
        assert_eq!(read_map_1x0(&mut r).unwrap(), vec![(0, 3), (10, 2)]);
        assert_eq!(r, b"abcde");
        assert!(read_map_1x0(&mut &b"2\n0\n"[..]).is_err());
    }
}
