//! Healthchecks (`Config.Healthcheck`): the test runs as an exec in the container every
//! interval; its exit code and output go to `State.Health` (the last five results), the
//! status turning `unhealthy` after `Retries` failures in a row, as dockerd does.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::daemon::{Daemon, Entry};
use crate::monitor::Request;

const DEFAULT: Duration = Duration::from_secs(30);

fn dur(ns: Option<i64>) -> Option<Duration> {
    ns.filter(|n| *n > 0)
        .map(|n| Duration::from_nanos(n as u64))
}

/// docker's stream frames to text (both streams, in order).
fn unframe(mut b: &[u8]) -> String {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let end = (8 + n).min(b.len());
        out.extend_from_slice(&b[8..end]);
        b = &b[end..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Run the container's healthcheck while this run of it lasts (`exits` is the exit count
/// at its start).
pub fn spawn(d: Arc<Daemon>, entry: Arc<Entry>) {
    let rec = entry.record();
    let Some(hc) = rec.config.healthcheck.clone() else {
        return;
    };
    let test = hc.test.clone().unwrap_or_default();
    let cmd: Vec<String> = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return,
    };
    if cmd.is_empty() {
        return;
    }
    let interval = dur(hc.interval).unwrap_or(DEFAULT);
    let timeout = dur(hc.timeout).unwrap_or(DEFAULT);
    let retries = hc.retries.filter(|r| *r > 0).unwrap_or(3);
    let exits = entry.watch.borrow().exits;
    let _ = d.set_health(
        &entry,
        json!({"Status": "starting", "FailingStreak": 0, "Log": []}),
    );
    tokio::spawn(async move {
        let mut streak = 0i64;
        let mut log: Vec<serde_json::Value> = Vec::new();
        loop {
            tokio::time::sleep(interval).await;
            let snap = entry.watch.borrow().clone();
            if snap.exits != exits || !snap.running || snap.removed {
                return;
            }
            let start = crate::util::now();
            let (code, output) = match run_once(&d, &entry.id, cmd.clone(), timeout).await {
                Some(r) => r,
                None => (-1, format!("Health check exceeded timeout ({timeout:?})")),
            };
            let snap = entry.watch.borrow().clone();
            if snap.exits != exits || !snap.running {
                return;
            }
            streak = if code == 0 { 0 } else { streak + 1 };
            log.push(json!({"Start": start, "End": crate::util::now(), "ExitCode": code, "Output": output}));
            if log.len() > 5 {
                log.remove(0);
            }
            let prev = entry
                .record()
                .state
                .health
                .and_then(|h| h["Status"].as_str().map(str::to_owned));
            let status = if code == 0 {
                "healthy"
            } else if streak >= retries {
                "unhealthy"
            } else {
                prev.as_deref().unwrap_or("starting")
            };
            let status = status.to_owned();
            let _ = d.set_health(
                &entry,
                json!({"Status": status, "FailingStreak": streak, "Log": log}),
            );
            if prev.as_deref() != Some(status.as_str()) {
                d.event(&entry.id, &format!("health_status: {status}"), &[]);
            }
        }
    });
}

async fn run_once(
    d: &Arc<Daemon>,
    id: &str,
    cmd: Vec<String>,
    timeout: Duration,
) -> Option<(i64, String)> {
    let cfg = bollard_stubs::models::ExecConfig {
        cmd: Some(cmd),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = match d.exec_create(id, cfg).await {
        Ok(e) => e,
        Err(e) => return Some((-1, e.to_string())),
    };
    let attach = Request::Attach {
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let run = async {
        let mut conn = match d.exec_start(&exec, Some(attach), None, None).await {
            Ok(Some(c)) => c,
            Ok(None) => return (-1, String::new()),
            Err(e) => return (-1, e.to_string()),
        };
        let mut buf = Vec::new();
        let _ = conn.read_to_end(&mut buf).await;
        let ex = d.exec_get(&exec).ok();
        if let Some(ex) = &ex {
            let mut done = ex.done.subscribe();
            let _ = done.wait_for(|x| *x).await;
        }
        let code = ex
            .and_then(|e| e.state.lock().expect("exec lock").2)
            .unwrap_or(-1);
        let mut out = unframe(&buf);
        out.truncate(4096);
        (code, out)
    };
    let r = tokio::time::timeout(timeout, run).await.ok();
    d.exec_forget(&exec);
    r
}
