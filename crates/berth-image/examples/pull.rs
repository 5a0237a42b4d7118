//! Pull an image from inside a tokio runtime (as a daemon does) and print the progress as the
//! Docker Engine API's JSON stream (`POST /images/create`), one object a line:
//!
//! ```text
//! cargo run -p berth-image --example pull -- --root /tmp/store 127.0.0.1:5000/busybox:latest
//! {"status":"Pulling from busybox","id":"latest"}
//! {"status":"Waiting","progressDetail":{},"id":"0a1b2c3d4e5f"}
//! {"status":"Downloading","progressDetail":{"current":262144,"total":2139136},"id":"0a1b2c3d4e5f"}
//! ...
//! {"status":"Pull complete","progressDetail":{},"id":"0a1b2c3d4e5f"}
//! {"status":"Digest: sha256:..."}
//! ```
//!
//! Only the library's API is used: [`berth_image::registry::pull`] runs on the runtime's
//! workers, its events go through an unbounded channel to a task that renders them.

use std::path::PathBuf;

use berth_image::registry::{pull, PullOptions};
use berth_image::{LayerState, PullEvent, Reference, Store};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Image store root.
    #[arg(long)]
    root: PathBuf,
    /// Image reference, e.g. `127.0.0.1:5000/busybox:latest`.
    reference: String,
}

/// One line of docker's progress stream for `e`; `None` for what docker does not show.
fn docker_json(e: &PullEvent) -> Option<serde_json::Value> {
    let PullEvent::Layer(l) = e else { return None };
    let detail = match l.state {
        LayerState::Downloading | LayerState::Extracting => {
            serde_json::json!({"current": l.current, "total": l.total})
        }
        _ => serde_json::json!({}),
    };
    Some(serde_json::json!({
        "status": l.state.docker_status(),
        "progressDetail": detail,
        "id": l.short_id(),
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = Store::open(&args.root)?;
    let r: Reference = args.reference.parse()?;
    println!(
        "{}",
        serde_json::json!({
            "status": format!("Pulling from {}", r.repository),
            "id": r.tag.as_deref().unwrap_or("latest"),
        })
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let render = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let Some(line) = docker_json(&e) {
                println!("{line}");
            }
        }
    });
    let img = pull(&store, &r, &PullOptions::default(), &move |e| {
        let _ = tx.send(e);
    })
    .await?;
    // The sender went with the pull's future: the renderer ends after the last event.
    render.await?;
    println!(
        "{}",
        serde_json::json!({"status": format!("Digest: {}", img.manifest_digest)})
    );
    Ok(())
}
