//! Namespaces: which to create with `clone`, which to join by path, and the user namespace's
//! id mappings (written by the parent for the child).

use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::spec::SpecError;

/// `CLONE_NEWTIME`, which `nix` does not name.
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

/// The namespace flag of a spec namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

/// The `/proc/PID/ns/` file name of a namespace flag.
pub fn proc_name(flag: CloneFlags) -> &'static str {
    match flag {
        f if f == CloneFlags::CLONE_NEWNS => "mnt",
        f if f == CloneFlags::CLONE_NEWCGROUP => "cgroup",
        f if f == CloneFlags::CLONE_NEWUTS => "uts",
        f if f == CloneFlags::CLONE_NEWIPC => "ipc",
        f if f == CloneFlags::CLONE_NEWUSER => "user",
        f if f == CloneFlags::CLONE_NEWPID => "pid",
        f if f == CloneFlags::CLONE_NEWNET => "net",
        _ => "time",
    }
}

/// Which namespaces the container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    /// Namespaces to create. Cgroup and time namespaces are unshared later by the child
    /// (the cgroup one once it is in its cgroup); the rest are created by `clone` itself.
    pub new: CloneFlags,
    /// Namespaces to join, in the order to join them (user first).
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// uid mappings of a new user namespace.
    pub uid_mappings: Vec<LinuxIdMapping>,
    /// gid mappings of a new user namespace.
    pub gid_mappings: Vec<LinuxIdMapping>,
}

impl Default for NsPlan {
    fn default() -> Self {
        NsPlan {
            new: CloneFlags::empty(),
            join: Vec::new(),
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
        }
    }
}

impl NsPlan {
    /// Read `linux.namespaces` (with its rules: no type twice; mappings need a new user ns).
    pub fn from_spec(spec: &Spec) -> Result<Self, SpecError> {
        let mut plan = NsPlan::default();
        let linux = spec.linux().as_ref();
        let mut seen = CloneFlags::empty();
        for (i, ns) in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let flag = clone_flag(ns.typ());
            if seen.contains(flag) {
                return Err(SpecError::invalid(
                    format!("linux.namespaces[{i}]"),
                    format!("namespace type {} appears twice", ns.typ()),
                ));
            }
            seen |= flag;
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => plan.join.push((flag, p.clone())),
                _ => plan.new |= flag,
            }
        }
        // Join the user namespace first: it decides what we may do in the others.
        plan.join
            .sort_by_key(|(f, _)| u8::from(*f != CloneFlags::CLONE_NEWUSER));
        if let Some(l) = linux {
            plan.uid_mappings = l.uid_mappings().clone().unwrap_or_default();
            plan.gid_mappings = l.gid_mappings().clone().unwrap_or_default();
        }
        let has_maps = !plan.uid_mappings.is_empty() || !plan.gid_mappings.is_empty();
        if has_maps && !plan.new.contains(CloneFlags::CLONE_NEWUSER) {
            return Err(SpecError::invalid(
                "linux.uidMappings",
                "id mappings need a new user namespace in linux.namespaces",
            ));
        }
        if plan.new.contains(CloneFlags::CLONE_NEWUSER) && !has_maps {
            return Err(SpecError::invalid(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
            && !plan.has(CloneFlags::CLONE_NEWUTS)
        {
            return Err(SpecError::invalid(
                "hostname",
                "setting the hostname needs a new uts namespace",
            ));
        }
        Ok(plan)
    }

    /// Flags for the `clone` that creates init (cgroup and time namespaces come later).
    pub fn clone_flags(&self) -> CloneFlags {
        let mut flags = self.new - CloneFlags::CLONE_NEWCGROUP - CLONE_NEWTIME;
        if self.needs_second_fork() {
            // The second child, not the first, must be the new pid namespace's init.
            flags -= CloneFlags::CLONE_NEWPID;
        }
        flags
    }

    /// The container has a user namespace (new or joined).
    pub fn has_user(&self) -> bool {
        self.has(CloneFlags::CLONE_NEWUSER)
    }

    /// The container gets a new user namespace.
    pub fn new_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// The container has namespace `flag`, new or joined.
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.join.iter().any(|(f, _)| *f == flag)
    }

    /// Joining a pid namespace or creating a time namespace only takes effect for children.
    pub fn needs_second_fork(&self) -> bool {
        self.new.contains(CLONE_NEWTIME)
            || self
                .join
                .iter()
                .any(|(f, _)| *f == CloneFlags::CLONE_NEWPID || *f == CLONE_NEWTIME)
    }
}

/// Write `/proc/PID/{uid,gid}_map` for a child in a new user namespace.
pub(crate) fn write_id_mappings(pid: i32, plan: &NsPlan) -> std::io::Result<()> {
    let fmt = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), fmt(&plan.uid_mappings))?;
    if !nix::unistd::geteuid().is_root() {
        // An unprivileged writer may only map its own gid, and only with setgroups denied.
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    }
    std::fs::write(format!("/proc/{pid}/gid_map"), fmt(&plan.gid_mappings))
}

/// The interface index of the loopback device, which the kernel gives `lo` in every network
/// namespace (`LOOPBACK_IFINDEX`, Linux 4.0 and later).
const LOOPBACK_IFINDEX: i32 = 1;

/// The netlink request that sets `IFF_UP` on interface `index` (an `RTM_NEWLINK` with an
/// `ifinfomsg` whose `ifi_change` names only that flag), asking for an acknowledgement.
fn link_up_request(index: i32, seq: u32) -> Vec<u8> {
    const NLMSG_HDRLEN: usize = 16;
    const IFINFOMSG_LEN: usize = 16;
    let len = NLMSG_HDRLEN + IFINFOMSG_LEN;
    let mut m = Vec::with_capacity(len);
    // struct nlmsghdr
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg
    m.push(libc::AF_UNSPEC as u8);
    m.push(0);
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    m
}

/// The errno of a netlink acknowledgement (`NLMSG_ERROR` carrying 0 for success) to request
/// `seq`, or `EPROTO` if `reply` is not one.
fn parse_ack(reply: &[u8], seq: u32) -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    let u16_at = |i: usize| {
        reply
            .get(i..i + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let u32_at = |i: usize| {
        reply
            .get(i..i + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let is_error = u16_at(4) == Some(libc::NLMSG_ERROR as u16);
    match (is_error, u32_at(8), u32_at(16)) {
        (true, Some(s), Some(code)) if s == seq => match code as i32 {
            0 => Ok(()),
            e => Err(Errno::from_raw(-e)),
        },
        _ => Err(Errno::EPROTO),
    }
}

/// Bring the loopback interface of the current network namespace up, as runc does for every
/// network namespace it creates (a new namespace's `lo` starts down, so nothing in it could
/// reach 127.0.0.1). Talks rtnetlink; needs `CAP_NET_ADMIN` over the namespace.
///
/// Errors: the errno of the socket calls or of the kernel's answer (`EPROTO` for an answer
/// that is not an acknowledgement).
pub(crate) fn loopback_up() -> Result<(), nix::errno::Errno> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let seq = 1;
    let req = link_up_request(LOOPBACK_IFINDEX, seq);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 1024];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse_ack(&buf[..n], seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_request_and_ack() {
        let req = link_up_request(1, 7);
        assert_eq!(req.len(), 32);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(req[4..6].try_into().unwrap()), 16); // RTM_NEWLINK
        assert_eq!(u16::from_ne_bytes(req[6..8].try_into().unwrap()), 5); // REQUEST|ACK
        assert_eq!(i32::from_ne_bytes(req[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(req[24..28].try_into().unwrap()), 1); // IFF_UP
        assert_eq!(u32::from_ne_bytes(req[28..32].try_into().unwrap()), 1); // change
        let ack = |seq: u32, code: i32| {
            let mut a = Vec::new();
            a.extend_from_slice(&36u32.to_ne_bytes());
            a.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
            a.extend_from_slice(&0u16.to_ne_bytes());
            a.extend_from_slice(&seq.to_ne_bytes());
            a.extend_from_slice(&0u32.to_ne_bytes());
            a.extend_from_slice(&code.to_ne_bytes());
            a.extend_from_slice(&req[..16]);
            a
        };
        assert_eq!(parse_ack(&ack(7, 0), 7), Ok(()));
        assert_eq!(
            parse_ack(&ack(7, -libc::EPERM), 7),
            Err(nix::errno::Errno::EPERM)
        );
        assert_eq!(parse_ack(&ack(8, 0), 7), Err(nix::errno::Errno::EPROTO));
        assert_eq!(parse_ack(&[0u8; 4], 7), Err(nix::errno::Errno::EPROTO));
    }

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plan_from_default_like_spec() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","hostname":"h","linux":{"namespaces":[
            {"type":"pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"uts"},
            {"type":"mount"},{"type":"cgroup"},{"type":"user","path":"/proc/1/ns/user"}]}}"#,
        );
        let p = NsPlan::from_spec(&s).unwrap();
        assert_eq!(
            p.new,
            CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWCGROUP
        );
        assert_eq!(p.join[0].0, CloneFlags::CLONE_NEWUSER);
        assert!(!p.clone_flags().contains(CloneFlags::CLONE_NEWCGROUP));
        assert!(!p.needs_second_fork());
    }

    #[test]
    fn rules() {
        let dup = spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}"#,
        );
        assert!(NsPlan::from_spec(&dup)
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
        let host = spec(r#"{"ociVersion":"1.0.2","hostname":"x","linux":{"namespaces":[]}}"#);
        assert!(NsPlan::from_spec(&host)
            .unwrap_err()
            .to_string()
            .contains("uts"));
        let maps = spec(
            r#"{"ociVersion":"1.0.2","linux":{"uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}"#,
        );
        assert!(NsPlan::from_spec(&maps).is_err());
        let joinpid =
            spec(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid","path":"/x"}]}}"#);
        assert!(NsPlan::from_spec(&joinpid).unwrap().needs_second_fork());
    }
}
