//! Detection of the host's cgroup hierarchies from `/proc/self/mountinfo`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;

/// Cgroup layout of the host, detected from `/proc/self/mountinfo`.
///
/// ```
/// use berth_cgroups::Layout;
/// assert_ne!(Layout::V1, Layout::V2);
/// ```
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only cgroup v1 hierarchies (one per controller or co-mounted group).
    V1,
    /// Only the unified cgroup v2 hierarchy.
    V2,
    /// Controllers on v1 hierarchies plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`)
    /// used for process tracking.
    Hybrid,
}

/// Filesystem type of one hierarchy.
///
/// ```
/// use berth_cgroups::FsType;
/// assert_eq!(FsType::V2.as_str(), "cgroup2");
/// ```
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// `cgroup` (v1).
    V1,
    /// `cgroup2` (unified).
    V2,
}

impl FsType {
    /// The filesystem type as it appears in mountinfo and `mount(2)`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::V1 => "cgroup",
            FsType::V2 => "cgroup2",
        }
    }
}

/// One mounted cgroup hierarchy.
///
/// ```
/// use berth_cgroups::{FsType, Hierarchy};
/// let h = Hierarchy {
///     fs_type: FsType::V1,
///     mount_point: "/sys/fs/cgroup/memory".into(),
///     mount_root: "/".into(),
///     controllers: vec!["memory".into()],
///     super_options: "rw,memory".into(),
/// };
/// assert!(h.has_controller("memory"));
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// `cgroup` or `cgroup2`.
    pub fs_type: FsType,
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub mount_point: PathBuf,
    /// The cgroup (inside the hierarchy) that is the root of this mount; `/` unless the mount
    /// is a bind mount of a sub-cgroup or was made inside a cgroup namespace.
    pub mount_root: PathBuf,
    /// v1: the subsystems of the hierarchy, including named ones such as `name=systemd`.
    /// v2: the controllers listed in `cgroup.controllers` at the mount root.
    pub controllers: Vec<String>,
    /// The superblock options of the mount (e.g. `rw,cpu,cpuacct`).
    pub super_options: String,
}

impl Hierarchy {
    /// True when the hierarchy carries `controller`.
    pub fn has_controller(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// Host directory of the cgroup at `path` (as written in `/proc/<pid>/cgroup`).
    pub(crate) fn dir_of(&self, path: &Path) -> Result<PathBuf, CgroupError> {
        let rel = path
            .strip_prefix(&self.mount_root)
            .map_err(|_| CgroupError::InvalidPath {
                path: path.display().to_string(),
                reason: format!(
                    "outside of the mounted part {} of {}",
                    self.mount_root.display(),
                    self.mount_point.display()
                ),
            })?;
        Ok(self.mount_point.join(rel))
    }
}

/// The v1 controllers this crate knows; other mount options of a `cgroup` mount are options.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// The detected cgroup mounts of the host.
///
/// ```no_run
/// let h = berth_cgroups::Hierarchies::detect()?;
/// println!("{:?}", h.layout());
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchies {
    layout: Layout,
    v1: Vec<Hierarchy>,
    unified: Option<Hierarchy>,
}

impl Hierarchies {
    /// Detects the hierarchies of the calling process from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|e| CgroupError::read(path, e))?;
        let mut h = Self::from_mountinfo(&text)?;
        if let Some(u) = h.unified.as_mut() {
            u.controllers = read_controllers(&u.mount_point);
        }
        Ok(h)
    }

    /// Parses a mountinfo text. The controllers of a cgroup2 mount are not read (they live in
    /// the filesystem), so they are empty.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut unified: Option<Hierarchy> = None;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let m = parse_mountinfo_line(line).ok_or_else(|| {
                CgroupError::parse("mountinfo", format!("line {}: {line:?}", n + 1))
            })?;
            match m.fs_type.as_str() {
                "cgroup" => {
                    let controllers: Vec<String> = m
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() || v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    v1.push(Hierarchy {
                        fs_type: FsType::V1,
                        mount_point: m.mount_point,
                        mount_root: m.root,
                        controllers,
                        super_options: m.super_options,
                    });
                }
                "cgroup2" => {
                    let better = match &unified {
                        None => true,
                        Some(u) => {
                            !u.mount_point.starts_with("/sys/fs/cgroup")
                                && m.mount_point.starts_with("/sys/fs/cgroup")
                        }
                    };
                    if better {
                        unified = Some(Hierarchy {
                            fs_type: FsType::V2,
                            mount_point: m.mount_point,
                            mount_root: m.root,
                            controllers: Vec::new(),
                            super_options: m.super_options,
                        });
                    }
                }
                _ => {}
            }
        }
        Self::new(v1, unified)
    }

    /// Builds the hierarchies over a directory laid out like `/sys/fs/cgroup` (for tests
    /// against a fake cgroupfs, or a cgroupfs mounted elsewhere).
    ///
    /// If `root/cgroup.controllers` exists the layout is pure v2 with `root` the unified
    /// mount. Otherwise every sub-directory is a v1 hierarchy whose controllers are its
    /// comma-separated name (`systemd` meaning `name=systemd`), except a sub-directory
    /// holding `cgroup.controllers` (e.g. `unified`), which is the cgroup2 mount. Symlinks
    /// (`cpu -> cpu,cpuacct`) are skipped.
    ///
    /// ```
    /// let root = std::env::temp_dir().join(format!("berth-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(root.join("memory")).unwrap();
    /// let h = berth_cgroups::Hierarchies::from_root(&root).unwrap();
    /// assert_eq!(h.layout(), berth_cgroups::Layout::V1);
    /// std::fs::remove_dir_all(&root).unwrap();
    /// ```
    pub fn from_root(root: &Path) -> Result<Self, CgroupError> {
        if root.join("cgroup.controllers").exists() {
            let unified = Hierarchy {
                fs_type: FsType::V2,
                mount_point: root.to_path_buf(),
                mount_root: PathBuf::from("/"),
                controllers: read_controllers(root),
                super_options: "rw".into(),
            };
            return Self::new(Vec::new(), Some(unified));
        }
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        let rd = fs::read_dir(root).map_err(|e| CgroupError::read(root, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| CgroupError::read(root, e))?;
            let ft = entry
                .file_type()
                .map_err(|e| CgroupError::read(entry.path(), e))?;
            if ft.is_dir() {
                names.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                ));
            }
        }
        names.sort();
        let mut v1 = Vec::new();
        let mut unified = None;
        for (name, path) in names {
            if path.join("cgroup.controllers").exists() {
                unified = Some(Hierarchy {
                    fs_type: FsType::V2,
                    controllers: read_controllers(&path),
                    mount_point: path,
                    mount_root: PathBuf::from("/"),
                    super_options: "rw".into(),
                });
                continue;
            }
            let controllers: Vec<String> = name
                .split(',')
                .map(|c| {
                    if V1_CONTROLLERS.contains(&c) || c.starts_with("name=") {
                        c.to_string()
                    } else {
                        format!("name={c}")
                    }
                })
                .collect();
            v1.push(Hierarchy {
                fs_type: FsType::V1,
                super_options: format!("rw,{}", controllers.join(",")),
                controllers,
                mount_point: path,
                mount_root: PathBuf::from("/"),
            });
        }
        Self::new(v1, unified)
    }

    /// Builds hierarchies from explicit parts; the layout is derived from them.
    pub fn new(v1: Vec<Hierarchy>, unified: Option<Hierarchy>) -> Result<Self, CgroupError> {
        let has_v1_controllers = v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        let layout = match (has_v1_controllers, unified.is_some()) {
            (true, true) => Layout::Hybrid,
            (true, false) => Layout::V1,
            (false, true) => Layout::V2,
            (false, false) => return Err(CgroupError::NotMounted),
        };
        Ok(Hierarchies {
            layout,
            v1,
            unified,
        })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The v1 hierarchies (empty in pure v2).
    pub fn v1(&self) -> &[Hierarchy] {
        &self.v1
    }

    /// The cgroup2 mount, if any.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.unified.as_ref()
    }

    /// The v1 hierarchy carrying `controller`.
    pub fn v1_for(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has_controller(controller))
    }
}

fn read_controllers(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// One parsed mountinfo line (only the fields we need).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// Parses one line of `/proc/<pid>/mountinfo` (see proc(5)).
pub(crate) fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let _devno = l.next()?;
    let root = unescape(l.next()?);
    let mount_point = unescape(l.next()?);
    let mut r = right.split(' ');
    let fs_type = r.next()?.to_string();
    let _source = r.next()?;
    let super_options = r.next().unwrap_or("").to_string();
    Some(MountInfo {
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        fs_type,
        super_options,
    })
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The hierarchy id (0 for the unified hierarchy).
    pub id: u32,
    /// The controllers of the hierarchy (empty for the unified hierarchy).
    pub controllers: Vec<String>,
    /// The cgroup path inside the hierarchy.
    pub path: PathBuf,
}

/// Parses the content of `/proc/<pid>/cgroup`.
///
/// ```
/// let l = berth_cgroups::parse_proc_cgroup("4:memory:/a\n0::/\n").unwrap();
/// assert_eq!(l[0].controllers, vec!["memory".to_string()]);
/// ```
pub fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>, CgroupError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.splitn(3, ':');
            let bad = || CgroupError::parse("/proc/self/cgroup", format!("bad line {l:?}"));
            let id = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let controllers = it.next().ok_or_else(bad)?;
            let path = it.next().ok_or_else(bad)?;
            Ok(ProcCgroup {
                id,
                controllers: controllers
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The cgroup of a process in `hierarchy`, from its parsed `/proc/<pid>/cgroup`.
pub(crate) fn own_path<'a>(
    hierarchy: &Hierarchy,
    proc_cgroup: &'a [ProcCgroup],
) -> Option<&'a Path> {
    proc_cgroup
        .iter()
        .find(|p| match hierarchy.fs_type {
            FsType::V2 => p.id == 0 && p.controllers.is_empty(),
            FsType::V1 => {
                let mut a = p.controllers.clone();
                let mut b = hierarchy.controllers.clone();
                a.sort();
                b.sort();
                p.id != 0 && a == b
            }
        })
        .map(|p| p.path.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:32 /sub /mnt/mem\\040x rw - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_hybrid() {
        let h = Hierarchies::from_mountinfo(HYBRID).unwrap();
        assert_eq!(h.layout(), Layout::Hybrid);
        assert_eq!(h.v1().len(), 4);
        let cpu = h.v1_for("cpuacct").unwrap();
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h.v1_for("cpuset").unwrap().controllers, vec!["cpuset"]);
        assert_eq!(
            h.v1_for("name=systemd").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/systemd")
        );
        // the duplicate memory mount is ignored
        assert_eq!(
            h.v1_for("memory").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            h.unified().unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
        assert!(h.v1_for("hugetlb").is_none());
    }

    #[test]
    fn mountinfo_pure_v1() {
        let text = "\
25 20 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 25 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 25 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let h = Hierarchies::from_mountinfo(text).unwrap();
        assert_eq!(h.layout(), Layout::V1);
        assert!(h.unified().is_none());
        assert_eq!(h.v1().len(), 2);
    }

    #[test]
    fn mountinfo_pure_v2() {
        let text = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
88 29 0:26 /x /other rw - cgroup2 cgroup2 rw
";
        let h = Hierarchies::from_mountinfo(text).unwrap();
        assert_eq!(h.layout(), Layout::V2);
        let u = h.unified().unwrap();
        assert_eq!(u.mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(u.super_options, "rw,nsdelegate,memory_recursiveprot");
    }

    #[test]
    fn mountinfo_none_and_garbage() {
        assert!(matches!(
            Hierarchies::from_mountinfo("1 2 3:4 / / rw - ext4 /dev/sda rw\n"),
            Err(CgroupError::NotMounted)
        ));
        assert!(matches!(
            Hierarchies::from_mountinfo("garbage\n"),
            Err(CgroupError::Parse { .. })
        ));
    }

    #[test]
    fn mountinfo_escapes_and_roots() {
        let m = parse_mountinfo_line("50 23 0:32 /sub /mnt/mem\\040x rw - cgroup cgroup rw,memory")
            .unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt/mem x"));
        assert_eq!(m.root, Path::new("/sub"));
        let h = Hierarchy {
            fs_type: FsType::V1,
            mount_point: m.mount_point,
            mount_root: m.root,
            controllers: vec!["memory".into()],
            super_options: m.super_options,
        };
        assert_eq!(
            h.dir_of(Path::new("/sub/a/b")).unwrap(),
            Path::new("/mnt/mem x/a/b")
        );
        assert!(h.dir_of(Path::new("/other")).is_err());
    }

    #[test]
    fn proc_cgroup_and_own_path() {
        let pc = parse_proc_cgroup(
            "9:name=systemd:/init.scope\n2:cpuacct,cpu:/c\n4:memory:/p/x\n0::/u\n",
        )
        .unwrap();
        let h = Hierarchies::from_mountinfo(HYBRID).unwrap();
        assert_eq!(
            own_path(h.v1_for("cpu").unwrap(), &pc),
            Some(Path::new("/c"))
        );
        assert_eq!(
            own_path(h.v1_for("memory").unwrap(), &pc),
            Some(Path::new("/p/x"))
        );
        assert_eq!(
            own_path(h.v1_for("name=systemd").unwrap(), &pc),
            Some(Path::new("/init.scope"))
        );
        assert_eq!(own_path(h.unified().unwrap(), &pc), Some(Path::new("/u")));
        assert_eq!(own_path(h.v1_for("cpuset").unwrap(), &pc), None);
        assert!(parse_proc_cgroup("x:y\n").is_err());
    }

    #[test]
    fn from_root_layouts() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["cpu,cpuacct", "memory", "systemd", "unified"] {
            fs::create_dir(d.path().join(sub)).unwrap();
        }
        fs::write(d.path().join("unified/cgroup.controllers"), "").unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", d.path().join("cpu")).unwrap();
        let h = Hierarchies::from_root(d.path()).unwrap();
        assert_eq!(h.layout(), Layout::Hybrid);
        assert_eq!(h.v1().len(), 3);
        assert!(h.v1_for("name=systemd").is_some());
        assert!(h.v1_for("cpuacct").is_some());

        let d2 = tempfile::tempdir().unwrap();
        fs::write(d2.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let h2 = Hierarchies::from_root(d2.path()).unwrap();
        assert_eq!(h2.layout(), Layout::V2);
        assert_eq!(
            h2.unified().unwrap().controllers,
            vec!["cpu", "memory", "pids"]
        );
    }
}
