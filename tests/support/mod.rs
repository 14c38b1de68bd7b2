//! The scripted model-API server (`tests/support/model_server.py`) as seen
//! from a test: started on a free loopback port with a script, its recorded
//! requests read back, stopped on drop.

#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `model_server.py`.
pub struct ModelServer {
    child: Child,
    pub port: u16,
    pub record: PathBuf,
}

/// The server script, from the source tree.
pub fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/model_server.py")
}

impl ModelServer {
    /// Starts the server with `script` (see the script's docstring), keeping
    /// its script and request record in `dir`. Returns once it listens: it
    /// prints its port as its first line.
    pub fn start(dir: &Path, script: &serde_json::Value) -> ModelServer {
        std::fs::create_dir_all(dir).expect("server dir");
        let script_path = dir.join("script.json");
        std::fs::write(&script_path, script.to_string()).expect("write script");
        let record = dir.join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(server_script())
            .arg("--script")
            .arg(&script_path)
            .arg("--record")
            .arg(&record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/support/model_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("model server did not print its port: {line:?}"));
        ModelServer {
            child,
            port,
            record,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a recorded request is JSON"))
            .collect()
    }

    /// The requests of the scripted conversations (`kind: main`).
    pub fn main_requests(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["kind"] == "main")
            .collect()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 POST to the server without any client library: the status
/// code, the headers (lowercase names) and the body.
pub fn post(
    port: u16,
    path: &str,
    body: &serde_json::Value,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The `data:` payloads of an SSE body, parsed as JSON (`[DONE]` skipped).
pub fn sse_data(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
        .collect()
}
