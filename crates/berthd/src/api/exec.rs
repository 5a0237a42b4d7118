//! `/containers/{id}/exec`, `/exec/{id}/start|json|resize`.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use serde_json::json;

use super::{json, json_body, ApiVersion, AppState, Q};
use crate::error::Error;
use crate::monitor::Request as MonReq;

/// `POST /containers/{id}/exec`.
pub async fn create(
    State(d): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let cfg: ExecConfig = json_body(&body)?;
    let id = d.exec_create(&name, cfg).await?;
    Ok(json(StatusCode::CREATED, &json!({"Id": id})))
}

/// `POST /exec/{id}/start`: detached (200) or hijacked (101).
pub async fn start(
    State(d): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, Error> {
    let version = req
        .extensions()
        .get::<ApiVersion>()
        .copied()
        .unwrap_or(ApiVersion(1, 50));
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| Error::BadParameter(format!("reading the body: {e}")))?;
    let sc: ExecStartConfig = json_body(&body)?;
    let ex = d.exec_get(&id)?;
    if sc.detach.unwrap_or(false) {
        d.exec_start(&id, None, None, None).await?;
        return Ok(StatusCode::OK.into_response());
    }
    let tty = ex.config.tty.unwrap_or(false);
    let detach = if tty && ex.config.attach_stdin.unwrap_or(false) {
        let spec = ex
            .config
            .detach_keys
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "ctrl-p,ctrl-q".into());
        Some(
            super::detach_keys(&spec)
                .ok_or_else(|| Error::BadParameter(format!("invalid detach keys: {spec:?}")))?,
        )
    } else {
        None
    };
    let mreq = MonReq::Attach {
        stdin: ex.config.attach_stdin.unwrap_or(false),
        stdout: ex.config.attach_stdout.unwrap_or(true),
        stderr: ex.config.attach_stderr.unwrap_or(true),
    };
    let (gate_tx, gate) =
        tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<Result<(), Error>>>();
    let conn = d
        .exec_start(&id, Some(mreq), sc.console_size.as_deref(), Some(gate))
        .await?
        .expect("attached");
    let (resp, on) = super::hijack(&mut req, !tty && version >= ApiVersion(1, 42));
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let _ = gate_tx.send(started_tx);
        let mut client = hyper_util::rt::TokioIo::new(up);
        if let Ok(Err(e)) = started.await {
            // As dockerd: the error on the stream (stdout's frame without a terminal).
            use tokio::io::AsyncWriteExt;
            let msg = format!("{e}\r\n").into_bytes();
            let mut out = Vec::new();
            if !tty {
                out.extend([1, 0, 0, 0]);
                out.extend((msg.len() as u32).to_be_bytes());
            }
            out.extend(msg);
            let _ = client.write_all(&out).await;
            let _ = client.shutdown().await;
            return;
        }
        let mut done = ex.done.subscribe();
        super::relay(client, conn, detach, async move {
            // The exit code is recorded before the client sees the end (it inspects next).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), done.wait_for(|d| *d))
                .await;
        })
        .await;
    });
    Ok(resp)
}

/// `GET /exec/{id}/json`.
pub async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    let ex = d.exec_get(&id)?;
    let (running, pid, code) = *ex.state.lock().expect("exec lock");
    let args = ex.config.cmd.clone().unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &json!({
            "ID": ex.id,
            "Running": running,
            "ExitCode": code,
            "ProcessConfig": {
                "tty": ex.config.tty.unwrap_or(false),
                "entrypoint": args.first(),
                "arguments": args.get(1..).unwrap_or_default(),
                "privileged": ex.config.privileged.unwrap_or(false),
                "user": ex.config.user.clone().unwrap_or_default(),
            },
            "OpenStdin": ex.config.attach_stdin.unwrap_or(false),
            "OpenStderr": ex.config.attach_stderr.unwrap_or(false),
            "OpenStdout": ex.config.attach_stdout.unwrap_or(false),
            "CanRemove": false,
            "ContainerID": ex.container,
            "DetachKeys": "",
            "Pid": pid,
        }),
    ))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    d.exec_get(&id)?;
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    d.resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}
