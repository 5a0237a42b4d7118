//! The default (bridge) network through CNI plugins (containernetworking-plugins' `bridge` and
//! `host-local`), as podman and kubelet delegate: one bridge (`--bridge NAME`), an address per
//! container from a host-local range kept under the data root, the bridge as gateway. Off
//! unless `--bridge` names a bridge (then containers of NetworkMode default/bridge join it).
//! Published ports go through the `portmap` plugin (DNAT in the daemon's namespace).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::error::Error;

/// Where the CNI plugins are.
pub const CNI_PATH: &str = "/usr/lib/cni";

/// The bridge network's settings.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// The bridge device.
    pub name: String,
    /// The subnet addresses come from (CIDR).
    pub subnet: String,
    /// host-local's state directory.
    pub ipam_dir: PathBuf,
}

/// What a container got on the bridge.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Attachment {
    /// Its address (no prefix length).
    pub ip: String,
    /// The prefix length.
    pub prefix: u8,
    /// The gateway (the bridge's address).
    pub gateway: String,
    /// The interface's MAC address.
    pub mac: String,
}

impl Bridge {
    fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "berth",
            "type": "bridge",
            "bridge": self.name,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            }
        })
    }

    fn run(&self, command: &str, id: &str, netns: Option<&Path>) -> Result<Value, Error> {
        self.plugin("bridge", &self.conf(), command, id, netns)
    }

    fn plugin(
        &self,
        kind: &str,
        conf: &Value,
        command: &str,
        id: &str,
        netns: Option<&Path>,
    ) -> Result<Value, Error> {
        let plugin = Path::new(CNI_PATH).join(kind);
        let mut child = Command::new(&plugin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env(
                "CNI_NETNS",
                netns.map(|p| p.display().to_string()).unwrap_or_default(),
            )
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::internal(format!("run {}", plugin.display()), e))?;
        let conf = serde_json::to_vec(conf).expect("json");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&conf);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::internal(format!("run {}", plugin.display()), e))?;
        if !out.status.success() {
            return Err(Error::Internal {
                what: format!("CNI {command} for {id}"),
                cause: format!(
                    "{} {}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }

    /// Put the network namespace `netns` of container `id` on the bridge (CNI ADD).
    pub fn attach(&self, id: &str, netns: &Path) -> Result<Attachment, Error> {
        let r = self.run("ADD", id, Some(netns))?;
        let ip = r["ips"][0]["address"].as_str().unwrap_or("");
        let (addr, prefix) = ip.split_once('/').unwrap_or((ip, "0"));
        let mac = r["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
            .and_then(|i| i["mac"].as_str())
            .unwrap_or("");
        Ok(Attachment {
            ip: addr.to_owned(),
            prefix: prefix.parse().unwrap_or(0),
            gateway: r["ips"][0]["gateway"].as_str().unwrap_or("").to_owned(),
            mac: mac.to_owned(),
        })
    }

    /// Publish `ports` (host port, container port, protocol) of container `id` at
    /// `address` on the daemon's network namespace (the CNI `portmap` plugin: DNAT rules).
    pub fn publish(
        &self,
        id: &str,
        netns: &Path,
        a: &Attachment,
        ports: &[(u16, u16, String)],
    ) -> Result<(), Error> {
        let conf = self.portmap_conf(ports, Some(a));
        self.plugin("portmap", &conf, "ADD", id, Some(netns))
            .map(drop)
    }

    /// Remove what [`publish`](Self::publish) set up.
    pub fn unpublish(&self, id: &str, ports: &[(u16, u16, String)]) -> Result<(), Error> {
        let conf = self.portmap_conf(ports, None);
        self.plugin("portmap", &conf, "DEL", id, None).map(drop)
    }

    fn portmap_conf(&self, ports: &[(u16, u16, String)], a: Option<&Attachment>) -> Value {
        let maps: Vec<Value> = ports
            .iter()
            .map(|(h, c, p)| json!({"hostPort": h, "containerPort": c, "protocol": p}))
            .collect();
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": "berth",
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
            "runtimeConfig": {"portMappings": maps},
        });
        if let Some(a) = a {
            conf["prevResult"] = json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": "x"}],
                "ips": [{"address": format!("{}/{}", a.ip, a.prefix), "gateway": a.gateway, "interface": 0}],
            });
        }
        conf
    }

    /// Release container `id`'s address (CNI DEL; its namespace may be gone already).
    pub fn detach(&self, id: &str) -> Result<(), Error> {
        self.run("DEL", id, None).map(drop)
    }
}

/// dockerd's `/etc/hosts` entries before the container's own (libnetwork `etchosts`).
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// What dockerd falls back to when the host's resolv.conf has no usable nameserver.
const DEFAULT_DNS_V4: [&str; 2] = ["8.8.8.8", "8.8.4.4"];
const DEFAULT_DNS_V6: [&str; 2] = ["2001:4860:4860::8888", "2001:4860:4860::8844"];

/// The network a container's /etc files are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcNetwork {
    /// `--network host`: the host's files (unless the container names its own entries).
    Host,
    /// The bridge (IPv4 only): loopback and IPv6 nameservers are dropped.
    Bridge,
    /// A namespace with loopback only (`none`, or the default network without `--bridge`):
    /// loopback nameservers are dropped.
    Isolated,
}

/// The host's files the container's are made from, read by [`HostFiles::read`].
#[derive(Debug, Clone, Default)]
pub struct HostFiles {
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf` as it is.
    pub resolv: String,
    /// The resolv.conf the nameservers come from: `/run/systemd/resolve/resolv.conf` when
    /// `/etc/resolv.conf` names only systemd-resolved's stub 127.0.0.53 (dockerd's
    /// `resolvconf.Path`), else `/etc/resolv.conf`; empty when missing.
    pub upstream: String,
}

impl HostFiles {
    /// Read the host's files (missing ones are empty, as dockerd goes on without them).
    pub fn read() -> HostFiles {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstream = if nameservers(&resolv) == ["127.0.0.53"] {
            std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
                .unwrap_or_else(|_| resolv.clone())
        } else {
            resolv.clone()
        };
        HostFiles {
            hosts,
            resolv,
            upstream,
        }
    }
}

/// One `ExtraHosts` entry (`--add-host NAME:IP`, or `NAME=IP` as newer clients send it,
/// IPv6 optionally in brackets) as (name, address); `host-gateway` becomes `gateway`.
/// Errors: 400 for a malformed entry, an invalid address, or `host-gateway` without a
/// gateway (no `--bridge`: dockerd would write `<nil>`).
pub fn extra_host(entry: &str, gateway: Option<&str>) -> Result<(String, String), Error> {
    let (name, ip) = entry
        .split_once('=')
        .or_else(|| entry.split_once(':'))
        .ok_or_else(|| Error::BadParameter(format!("invalid extra host: {entry:?}")))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() {
        return Err(Error::BadParameter(format!(
            "invalid extra host: {entry:?}"
        )));
    }
    if ip == "host-gateway" {
        return gateway
            .map(|g| (name.to_owned(), g.to_owned()))
            .ok_or_else(|| {
                Error::BadParameter(
                    "unable to derive the IP value for host-gateway (berthd runs without --bridge)"
                        .into(),
                )
            });
    }
    ip.parse::<std::net::IpAddr>()
        .map_err(|_| Error::BadParameter(format!("invalid IP address in add-host: {ip:?}")))?;
    Ok((name.to_owned(), ip.to_owned()))
}

/// The container's `/etc/hosts`: the host's for `--network host` without extra hosts;
/// else dockerd's defaults, then `extra` (name, address) in order, then (off the host
/// network) `127.0.1.1 HOSTNAME`, which the bridge attach rewrites to the container's address.
pub fn hosts_file(
    net: EtcNetwork,
    host: &HostFiles,
    hostname: &str,
    extra: &[(String, String)],
) -> String {
    if net == EtcNetwork::Host && extra.is_empty() {
        return host.hosts.clone();
    }
    let mut out = DEFAULT_HOSTS.to_owned();
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    if net != EtcNetwork::Host {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    out
}

/// The DNS settings a container asks for (`--dns`, `--dns-search`, `--dns-option`).
#[derive(Debug, Clone, Default)]
pub struct Dns<'a> {
    /// Nameservers.
    pub servers: &'a [String],
    /// Search domains.
    pub search: &'a [String],
    /// Resolver options.
    pub options: &'a [String],
}

/// The container's `/etc/resolv.conf`, as libnetwork's `setupDNS`/`updateDNS` make it:
/// with any DNS setting given, `search`/`nameserver`/`options` lines where each setting not
/// given comes from the host (`resolvconf.Build`); else the host's file as it is for
/// `--network host`, or filtered of loopback nameservers (and IPv6 ones on the IPv4 bridge)
/// with Google's public servers appended when none is left (`FilterResolvDNS`).
pub fn resolv_conf(net: EtcNetwork, host: &HostFiles, dns: &Dns<'_>) -> String {
    if dns.servers.is_empty() && dns.search.is_empty() && dns.options.is_empty() {
        return match net {
            EtcNetwork::Host => host.resolv.clone(),
            // setupDNS filters as if IPv6 were on; updateDNS, once the endpoint joins a
            // network without IPv6, filters again with it off.
            EtcNetwork::Isolated => filter_resolv(&host.upstream, true),
            EtcNetwork::Bridge => filter_resolv(&filter_resolv(&host.upstream, true), false),
        };
    }
    let pick = |given: &[String], host: Vec<String>| {
        if given.is_empty() {
            host
        } else {
            given.to_vec()
        }
    };
    let servers = pick(dns.servers, nameservers(&host.upstream));
    let search = pick(dns.search, last_line_fields(&host.upstream, "search"));
    let options = pick(dns.options, last_line_fields(&host.upstream, "options"));
    let mut out = String::new();
    let joined = search.join(" ");
    if !search.is_empty() && joined.trim() != "." {
        out.push_str(&format!("search {joined}\n"));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    let joined = options.join(" ");
    if !joined.trim().is_empty() {
        out.push_str(&format!("options {joined}\n"));
    }
    out
}

/// The fields of `line` with its comment (from `#` or `;`) dropped.
fn fields(line: &str) -> Vec<&str> {
    line.split(['#', ';'])
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// The nameserver addresses of a resolv.conf.
pub fn nameservers(content: &str) -> Vec<String> {
    content
        .lines()
        .filter_map(|l| match fields(l).as_slice() {
            ["nameserver", ip] if ip_of(ip).is_some() => Some((*ip).to_owned()),
            _ => None,
        })
        .collect()
}

/// The values of the last `search` or `options` line (as libresolv, the last one wins).
fn last_line_fields(content: &str, key: &str) -> Vec<String> {
    content
        .lines()
        .rev()
        .map(fields)
        .find(|f| f.first() == Some(&key))
        .map(|f| f[1..].iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

/// An address as resolv.conf writes it (IPv6 possibly with a `%zone`).
fn ip_of(s: &str) -> Option<std::net::IpAddr> {
    s.split('%').next().unwrap_or(s).parse().ok()
}

/// libnetwork's `FilterResolvDNS`: drop `nameserver` lines naming a loopback address
/// (127.0.0.0/8, ::1), and IPv6 ones unless `ipv6`, each with the blank lines after it; then,
/// if no nameserver is left, append Google's (IPv6 ones too when `ipv6`).
pub fn filter_resolv(content: &str, ipv6: bool) -> String {
    let mut out = String::new();
    let mut eat_blank = false;
    for line in content.split_inclusive('\n') {
        if eat_blank && line.trim().is_empty() {
            continue;
        }
        eat_blank = false;
        let drop = line
            .strip_prefix("nameserver")
            .filter(|r| r.starts_with([' ', '\t']))
            .and_then(|r| r.split_whitespace().next())
            .and_then(ip_of)
            .is_some_and(|ip| ip.is_loopback() || (!ipv6 && ip.is_ipv6()));
        if drop {
            eat_blank = true;
            continue;
        }
        out.push_str(line);
    }
    if nameservers(&out).is_empty() {
        let mut dns: Vec<&str> = DEFAULT_DNS_V4.to_vec();
        if ipv6 {
            dns.extend(DEFAULT_DNS_V6);
        }
        let lines: Vec<String> = dns.iter().map(|d| format!("nameserver {d}")).collect();
        out.push('\n');
        out.push_str(&lines.join("\n"));
    }
    out
}

/// The gateway of `bridge` (the first address of its subnet, as host-local hands out), the
/// address `host-gateway` stands for.
pub fn gateway(bridge: &Bridge) -> Option<String> {
    let (net, _) = bridge.subnet.split_once('/')?;
    let ip: std::net::Ipv4Addr = net.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(resolv: &str) -> HostFiles {
        HostFiles {
            hosts: "127.0.0.1 localhost\n".into(),
            resolv: resolv.into(),
            upstream: resolv.into(),
        }
    }

    #[test]
    fn resolv_conf_as_libnetwork() {
        let none = Dns::default();
        let h = host("# x\nnameserver 127.0.0.53\n\nnameserver ::1\nsearch a.b\n");
        // Loopback only: dockerd's fallback (IPv6 ones removed again on the IPv4 bridge).
        assert_eq!(
            resolv_conf(EtcNetwork::Bridge, &h, &none),
            "# x\nsearch a.b\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(EtcNetwork::Isolated, &h, &none),
            "# x\nsearch a.b\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n\
             nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844"
        );
        assert_eq!(resolv_conf(EtcNetwork::Host, &h, &none), h.resolv);
        let h = host("nameserver 10.0.0.1\nnameserver 127.0.0.1\nnameserver fe80::1\n");
        assert_eq!(
            resolv_conf(EtcNetwork::Bridge, &h, &none),
            "nameserver 10.0.0.1\n"
        );
        let servers = ["1.1.1.1".to_owned()];
        let search = ["example.com".to_owned()];
        let options = ["ndots:2".to_owned()];
        let all = Dns {
            servers: &servers,
            search: &search,
            options: &options,
        };
        assert_eq!(
            resolv_conf(EtcNetwork::Host, &h, &all),
            "search example.com\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
        let only_search = Dns {
            search: &search,
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(EtcNetwork::Isolated, &h, &only_search),
            "search example.com\nnameserver 10.0.0.1\nnameserver 127.0.0.1\nnameserver fe80::1\n"
        );
    }

    #[test]
    fn hosts_and_extra_hosts() {
        let h = host("");
        assert_eq!(
            extra_host("foo:1.2.3.4", None).unwrap(),
            ("foo".into(), "1.2.3.4".into())
        );
        assert_eq!(
            extra_host("y:::1", None).unwrap(),
            ("y".into(), "::1".into())
        );
        assert_eq!(
            extra_host("z=[::2]", None).unwrap(),
            ("z".into(), "::2".into())
        );
        assert_eq!(
            extra_host("g:host-gateway", Some("10.1.0.1")).unwrap().1,
            "10.1.0.1"
        );
        assert!(extra_host("g:host-gateway", None).is_err());
        assert!(extra_host("foo:nope", None).is_err());
        let extra = [("foo".to_owned(), "1.2.3.4".to_owned())];
        assert_eq!(hosts_file(EtcNetwork::Host, &h, "n", &[]), h.hosts);
        assert_eq!(
            hosts_file(EtcNetwork::Host, &h, "n", &extra),
            format!("{DEFAULT_HOSTS}1.2.3.4\tfoo\n")
        );
        assert_eq!(
            hosts_file(EtcNetwork::Bridge, &h, "n", &extra),
            format!("{DEFAULT_HOSTS}1.2.3.4\tfoo\n127.0.1.1\tn\n")
        );
        let b = Bridge {
            name: "b".into(),
            subnet: "10.88.0.0/16".into(),
            ipam_dir: "/x".into(),
        };
        assert_eq!(gateway(&b).as_deref(), Some("10.88.0.1"));
    }
}
