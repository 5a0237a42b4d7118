//! Small helpers to read and write cgroup files with errors that name the file.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::CgroupError;

/// Writes `value` to `dir/file` without creating it (cgroupfs files always exist).
pub(crate) fn write(dir: &Path, file: &str, value: impl AsRef<str>) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let value = value.as_ref();
    tracing::trace!(path = %path.display(), value, "cgroup write");
    #[cfg(test)]
    WRITES.with(|w| w.borrow_mut().push((path.clone(), value.to_string())));
    let res = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

#[cfg(test)]
thread_local! {
    /// Every write of the current test thread, in order (a fake cgroupfs keeps only the
    /// last value of a file, the kernel takes each write as one command).
    pub(crate) static WRITES: std::cell::RefCell<Vec<(std::path::PathBuf, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads `dir/file` to a string.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| CgroupError::read(path, e))
}

/// Reads `dir/file` if it exists.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::read(path, e)),
    }
}

/// Reads a single unsigned number; `max` reads as `u64::MAX`.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    let s = read(dir, file)?;
    parse_u64(s.trim())
        .ok_or_else(|| CgroupError::parse(dir.join(file), format!("not a number: {:?}", s.trim())))
}

/// Reads a number if the file exists.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    if !dir.join(file).exists() {
        return Ok(None);
    }
    read_u64(dir, file).map(Some)
}

/// Parses a cgroup number, `max` being `u64::MAX`.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// Parses the pids of a `cgroup.procs` file.
pub(crate) fn parse_pids(dir: &Path, content: &str) -> Result<Vec<i32>, CgroupError> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse::<i32>()
                .map_err(|_| CgroupError::parse(dir.join("cgroup.procs"), format!("bad pid {l:?}")))
        })
        .collect()
}

/// Parses "key value" lines (memory.stat, cpu.stat, cgroup.events) into pairs.
pub(crate) fn parse_flat_keyed(content: &str) -> Vec<(String, u64)> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64(it.next()?)?;
            Some((k.to_string(), v))
        })
        .collect()
}
