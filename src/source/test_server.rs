//! A small HTTP server on 127.0.0.1 for the sources' unit tests: it answers each request with what a
//! handler returns and remembers every request's path and headers, so a test can see what was sent
//! where (the token, a redirect's next hop).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target, e.g. `/photos/a.jpg`.
    pub path: String,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An answer: status, extra headers and body (`Content-Length` and `Connection: close` are added).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A 200 with `content_type` (`None`: no such header) and `body`.
    pub fn ok(content_type: Option<&str>, body: &[u8]) -> Self {
        Reply {
            status: 200,
            headers: content_type
                .map(|t| ("Content-Type", t.to_string()))
                .into_iter()
                .collect(),
            body: body.to_vec(),
        }
    }

    /// A 302 to `location`.
    pub fn redirect(location: &str) -> Self {
        Reply {
            status: 302,
            headers: vec![("Location", location.to_string())],
            body: Vec::new(),
        }
    }
}

/// A running server; it stops with the test process.
pub struct TestServer {
    /// Where it listens (always 127.0.0.1).
    pub addr: SocketAddr,
    /// Every request seen, in order.
    seen: Arc<Mutex<Vec<Request>>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 and a free port, answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, handler) = (Arc::clone(&seen), Arc::new(handler));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (log, handler) = (Arc::clone(&log), Arc::clone(&handler));
                std::thread::spawn(move || answer(conn, &log, &*handler));
            }
        });
        TestServer { addr, seen }
    }

    /// A URL on this server: `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().expect("server log").clone()
    }
}

/// Reads one request from `conn`, records it and writes the handler's answer.
fn answer(mut conn: TcpStream, log: &Mutex<Vec<Request>>, handler: &(dyn Fn(&Request) -> Reply + Send + Sync)) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone the connection"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let request = Request { path, headers };
    let reply = handler(&request);
    log.lock().expect("server log").push(request);
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&reply.body);
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
