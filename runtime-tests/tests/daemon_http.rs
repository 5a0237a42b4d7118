//! berthd's HTTP behaviour under refusal: a request refused before its handler reads the body
//! (an unsupported endpoint, a bad API version, a bad parameter) still has its body read, so
//! the client gets the answer instead of `broken pipe`, and the connection stays usable.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use runtime_tests::daemon::TestDaemon;

/// One response from a keep-alive connection: (status, body).
fn response(r: &mut BufReader<UnixStream>) -> (u16, String) {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len = 0;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        chunked |= h == "transfer-encoding: chunked";
    }
    assert!(!chunked, "{status}: a refusal is not chunked");
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (code, String::from_utf8(body).unwrap())
}

#[test]
fn daemon_reads_the_body_of_a_refused_request() {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    // ~900 KiB of JSON: far more than a unix socket buffers, so a server that answers and
    // closes without reading it makes the client's write fail.
    let labels: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| (format!("label-{i:05}"), "x".repeat(30).into()))
        .collect();
    let big = serde_json::json!({"Name": "mine", "Labels": labels}).to_string();
    assert!(big.len() > 800 << 10);
    for (path, want_status, want) in [
        ("/v1.41/networks/create", 400, "not supported"),
        ("/v1.12/containers/create", 400, "too old"),
        ("/v1.41/containers/create", 400, "Image"),
    ] {
        let s = UnixStream::connect(&d.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        write!(
            w,
            "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .unwrap();
        w.write_all(big.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: writing the body: {e}"));
        let mut r = BufReader::new(s);
        let (code, body) = response(&mut r);
        assert_eq!(code, want_status, "{path}: {body}");
        assert!(body.contains(want), "{path}: {body}");
        // The connection is still good for the next request.
        write!(w, "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n").unwrap();
        assert_eq!(response(&mut r), (200, "OK".into()), "{path}: then /_ping");
    }
}
