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
