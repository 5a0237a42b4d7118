//! The json-file log driver: one JSON object a line, as dockerd writes it
//! (`{"log":"hi\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}`), with
//! `max-size`/`max-file` rotation (`NAME`, `NAME.1`, ... `NAME.(max-file - 1)`, oldest last).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Docker splits a line longer than this into several records (its 16 KiB partial messages).
pub const MAX_LINE: usize = 16 * 1024;

/// One log record as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The bytes of the line (lossy UTF-8), with its newline when it had one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

/// Rotation settings (`--log-opt max-size=`, `max-file=`); `max_size == 0` means unbounded.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may hold before it is rotated (0: never rotate).
    pub max_size: u64,
    /// Files kept, the live one included (at least 1).
    pub max_files: u32,
}

/// The log's `i`th file: `NAME` for 0 (the one written), `NAME.i` the `i`th newest rotated.
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    if i == 0 {
        return path.to_owned();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// An open json-file log that the monitor appends to.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    /// Bytes of an unfinished line, per stream (0 stdout, 1 stderr).
    partial: [Vec<u8>; 2],
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (also a terminal's output).
    Stdout = 0,
    /// Standard error.
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl Writer {
    /// Open (append, create 0640) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_owned(),
            file,
            size,
            rotation,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Add output of `stream`: every complete line becomes a record; the rest waits for its
    /// newline (or [`MAX_LINE`] bytes, or [`flush`](Self::flush)).
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let buf = &mut self.partial[stream as usize];
            let room = MAX_LINE - buf.len();
            let take = match data.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => i + 1,
                _ => room.min(data.len()),
            };
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if buf.last() == Some(&b'\n') || buf.len() >= MAX_LINE {
                let line = std::mem::take(buf);
                self.emit(stream, &line)?;
            }
        }
        Ok(())
    }

    /// Write out unfinished lines (at the end of the output).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                self.emit(stream, &line)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let rec = Record {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: stream.name().to_owned(),
            time: crate::util::now(),
        };
        let mut bytes = serde_json::to_vec(&rec).map_err(io::Error::other)?;
        bytes.push(b'\n');
        if self.rotation.max_size > 0
            && self.size > 0
            && self.size + bytes.len() as u64 > self.rotation.max_size
        {
            self.rotate()?;
        }
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let n = self.rotation.max_files.max(1);
        if n == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(rotated(&self.path, n - 1));
        for i in (1..n - 1).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(p: &Path) -> Vec<Record> {
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_and_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"ld\ntail").unwrap();
        w.flush().unwrap();
        let r = records(&p);
        let got: Vec<(&str, &str)> = r
            .iter()
            .map(|r| (r.log.as_str(), r.stream.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("hello\n", "stdout"),
                ("oops\n", "stderr"),
                ("world\n", "stdout"),
                ("tail", "stdout")
            ]
        );
        assert!(crate::util::parse_rfc3339(&r[0].time).is_some());
    }

    #[test]
    fn long_lines_split() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        let r = records(&p);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].log.len(), MAX_LINE);
        assert_eq!(r[1].log.len(), 11);
    }

    #[test]
    fn rotation_keeps_max_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.log");
        let rot = Rotation {
            max_size: 200,
            max_files: 3,
        };
        let mut w = Writer::open(&p, rot).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        // The files that exist, oldest first.
        let fs_: Vec<PathBuf> = (0..rot.max_files)
            .rev()
            .map(|i| rotated(&p, i))
            .filter(|f| f.exists())
            .collect();
        assert_eq!(fs_.len(), 3);
        for f in &fs_ {
            assert!(fs::metadata(f).unwrap().len() <= 200);
        }
        let all: Vec<String> = fs_.iter().flat_map(|f| records(f)).map(|r| r.log).collect();
        assert_eq!(all.last().unwrap(), "line 39\n");
        // Consecutive: rotation loses only whole old files.
        let first: usize = all[0]
            .trim()
            .strip_prefix("line ")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(all.len(), 40 - first);
        assert!(!rotated(&p, 3).exists());
    }
}
