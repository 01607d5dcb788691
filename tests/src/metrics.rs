//! For the metrics tests: a plain HTTP/1.1 GET over a TCP socket, and a
//! reader of the Prometheus text format.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP response: status code, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (a whole HTTP request, as bytes) to `addr` and reads the
/// response until the server closes the connection.
pub fn exchange(addr: &str, request: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers_say_chunked(&text) {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn headers_say_chunked(text: &str) -> bool {
    text.split("\r\n\r\n").next().is_some_and(|h| {
        h.to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` from `addr`, with extra header lines (each ending in `\r\n`).
pub fn get(addr: &str, path: &str, headers: &str) -> std::io::Result<Response> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    exchange(addr, request.as_bytes())
}

/// One sample of a scrape: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (`taskscope_polls_total`, `..._bucket`, ...).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of a text exposition (comments and `# EOF` skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while let Some((key, rest)) = text.split_once("=\"") {
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        text = &rest[end..];
    }
    labels
}

/// The samples named `name` whose `label` starts with `prefix`.
pub fn with_label<'a>(
    samples: &'a [Sample],
    name: &str,
    label: &str,
    prefix: &str,
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.get(label).is_some_and(|v| v.starts_with(prefix)))
        .collect()
}

/// `metrics_app` (this crate's binary) running with its metrics endpoint on a
/// free loopback port, stopped when dropped.
pub struct MetricsApp {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    /// `host:port` of its metrics endpoint.
    pub addr: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl MetricsApp {
    /// Starts `bin` (the path of `metrics_app`) with `env` added to what the
    /// tests set (`TASKSCOPE_METRICS_ADDR` on a free port unless `env` sets
    /// it, a slow-poll threshold of 50 ms, no viewer server, no report) and
    /// waits until it says `ready` (its slow polls are done).
    pub fn start(bin: &str, env: &[(&str, &str)]) -> MetricsApp {
        use std::process::{Command, Stdio};
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let mut cmd = Command::new(bin);
        cmd.env("TASKSCOPE_METRICS_ADDR", &addr)
            .env("TASKSCOPE_SLOW_POLL_MS", "50")
            .env("TASKSCOPE_ADDR", "off")
            .env_remove("TASKSCOPE_REPORT")
            .env_remove("TASKSCOPE_TOKEN")
            .env_remove("TASKSCOPE_METRICS_MAX_LOCATIONS")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start metrics_app");
        let (stderr, _reader) = crate::collect_stderr(child.stderr.take().unwrap());
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let stderr_now = {
            let stderr = std::sync::Arc::clone(&stderr);
            move || stderr.lock().unwrap().clone()
        };
        crate::next_line_where(&mut stdout, "metrics_app", stderr_now, |l| {
            (l == "ready").then_some(())
        });
        let addr = env
            .iter()
            .find(|(k, _)| *k == "TASKSCOPE_METRICS_ADDR")
            .map_or(addr, |(_, v)| v.to_string());
        MetricsApp {
            stdin: child.stdin.take(),
            child,
            addr,
            stderr,
        }
    }

    /// What the app wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One scrape as Prometheus makes it (OpenMetrics), parsed; panics
    /// unless the answer is 200.
    pub fn scrape(&self) -> Vec<Sample> {
        let response = get(
            &self.addr,
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
        )
        .unwrap_or_else(|e| panic!("scrape {}: {e}; stderr:\n{}", self.addr, self.stderr()));
        assert_eq!(response.status, 200, "{response:?}");
        assert!(response.body.ends_with("# EOF\n"), "{}", response.body);
        parse(&response.body)
    }

    /// Ends the app (closes its stdin) and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for metrics_app")
    }
}

impl Drop for MetricsApp {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
