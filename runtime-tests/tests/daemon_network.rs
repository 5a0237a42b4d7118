//! berthd's bridge network (CNI bridge + host-local), with berthd in a network namespace the
//! test creates (`unshare --net`): nothing is added to the host's network.

use runtime_tests::daemon::{OutputExt, TestDaemon};

#[test]
fn daemon_bridge_network_between_containers() {
    runtime_tests::require_root();
    assert!(
        std::path::Path::new("/usr/lib/cni/bridge").exists(),
        "containernetworking-plugins"
    );
    let d =
        TestDaemon::start_in_netns(&["--bridge", "berth0", "--bridge-subnet", "172.31.77.0/24"])
            .unwrap();
    d.load_busybox();
    let server = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "busybox",
        "sh",
        "-c",
        "echo served | nc -l -p 8080",
    ]));
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"]);
    assert!(ip.starts_with("172.31.77."), "{ip}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "srv"]),
        "172.31.77.1"
    );
    // The container has that address on eth0, and its /etc/hosts names it.
    assert!(d
        .ok(&["exec", "srv", "ip", "-4", "addr", "show", "eth0"])
        .contains(&format!("inet {ip}/24")));
    assert!(d
        .ok(&["exec", "srv", "cat", "/etc/hosts"])
        .contains(&format!("{ip}\t")));
    // Another container reaches it over the bridge.
    let got = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("for i in 1 2 3 4 5 6 7 8 9 10; do nc {ip} 8080 && break; sleep 0.2; done"),
    ]);
    assert_eq!(got, "served");
    assert_eq!(d.ok(&["wait", "srv"]), "0");
    // Addresses are released at the exit: the next container may get it again, and
    // --network none still has only loopback.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "/sys/class/net"
        ]),
        "lo"
    );
    let ipam = d.data.join("network/ipam/berth");
    let held: Vec<String> = std::fs::read_dir(&ipam)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("172."))
                .collect()
        })
        .unwrap_or_default();
    assert!(held.is_empty(), "addresses still held: {held:?}");
    d.ok(&["rm", &server]);
    // -p: the port is published in the daemon's namespace (portmap's DNAT), reached there
    // through the bridge's address.
    let web = d.track(&d.ok(&[
        "run",
        "-d",
        "-p",
        "8081:8080",
        "busybox",
        "sh",
        "-c",
        "echo published | nc -l -p 8080",
    ]));
    assert_eq!(
        d.ok(&["ps", "--format", "{{.Ports}}"]),
        "0.0.0.0:8081->8080/tcp"
    );
    assert_eq!(d.ok(&["port", &web]), "8080/tcp -> 0.0.0.0:8081");
    let mut nets: Vec<String> = d
        .ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    nets.sort();
    assert_eq!(nets, ["bridge bridge", "host host", "none null"]);
    assert_eq!(
        d.ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "bridge"
        ]),
        "172.31.77.0/24"
    );
    assert!(d
        .ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.IPv4Address}}{{end}}",
            "bridge"
        ])
        .starts_with("172.31.77."));
    let o = d.docker(&["network", "create", "mine"]);
    o.assert_stderr_contains("not supported");
    let busybox = runtime_tests::rootfs_dir().unwrap().join("bin/busybox");
    let ns = format!("--net=/proc/{}/ns/net", d.pid());
    let mut got = String::new();
    d.wait_until("the published port", 20, || {
        let o = std::process::Command::new("nsenter")
            .arg(&ns)
            .arg(&busybox)
            .args(["nc", "-w", "2", "172.31.77.1", "8081"])
            .output()
            .unwrap();
        got = o.stdout_str();
        got == "published\n"
    });
    assert_eq!(d.ok(&["wait", &web]), "0");
    d.ok(&["rm", &web]);
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        "80:80",
        "busybox",
        "true",
    ]);
    o.assert_stderr_contains("needs the bridge network");
    // The host's own namespace has no such bridge.
    assert!(!std::path::Path::new("/sys/class/net/berth0").exists());
    d.assert_clean(&[]);
}
