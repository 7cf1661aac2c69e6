//! The static file server of `cargo xtask serve` and the page tests: `dist/` on 127.0.0.1, with the two
//! cross-origin isolation headers the threaded engine needs.
//!
//! Under `/as-host/<variant>/` it serves the same page as a lesser static host would (`Host`), so the page tests
//! check the page's fallbacks in every browser alike, without request interception (which differs per browser and
//! per driver protocol).
//!
//! One thread per connection and one request per connection (`Connection: close`): no request ever waits for a
//! pool thread or queues behind another on a kept-alive connection. (tiny_http's pooled keep-alive connections left
//! one request of a page load unanswered about once in a few hundred page loads under load, which hung that page's
//! module imports; a page load here is a dozen short local connections.)

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may take to send its request, or to take a response: past it the connection is dropped
/// rather than holding its thread (a stalled tab, a test killed mid-download).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest request head read (request line and headers).
const MAX_HEAD: usize = 64 << 10;

/// Serves `root` on 127.0.0.1:`port` (0: any free port) from background threads; returns the address.
pub fn spawn_server(root: PathBuf, port: u16) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (choose another with --port)"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let root = Arc::new(root);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            // A connection that failed before it was accepted is the client's problem.
            let Ok(stream) = stream else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = serve_connection(&root, stream);
            });
        }
    });
    Ok(addr)
}

/// Reads one request, answers it and closes the connection.
fn serve_connection(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers say nothing the answer depends on; they are read so the client sees its request taken whole.
    let mut head = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        head += n;
        if n == 0 || line == "\r\n" || line == "\n" || head > MAX_HEAD {
            break;
        }
    }
    let started = Instant::now();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (host, target) = Host::of(target);
    let reply = match method {
        "GET" | "HEAD" => respond(root, target, host),
        _ => Reply::text(405, "Method Not Allowed", "only GET and HEAD"),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.reason,
        reply.content_type,
        reply.body.len()
    )?;
    write!(out, "{CACHE_CONTROL}\r\n")?;
    if host.isolation {
        for header in ISOLATION {
            write!(out, "{header}\r\n")?;
        }
    }
    out.write_all(b"\r\n")?;
    if method != "HEAD" {
        out.write_all(&reply.body)?;
    }
    out.flush()?;
    // A page test that times out should say whether the server was slow or the browser was.
    let took = started.elapsed();
    if took > Duration::from_secs(5) {
        eprintln!("xtask serve: {target} took {:.1} s to send", took.as_secs_f64());
    }
    out.shutdown(std::net::Shutdown::Write)
}

/// Sent with every response: always revalidate, so a rebuilt page never mixes with a cached wasm module.
const CACHE_CONTROL: &str = "Cache-Control: no-cache";
/// Cross-origin isolation, so the page may share wasm memory with worker threads (the CPU executor's pool).
/// Everything it loads is same-origin, so nothing else changes.
const ISOLATION: [&str; 2] = ["Cross-Origin-Opener-Policy: same-origin", "Cross-Origin-Embedder-Policy: require-corp"];

/// The host a request is served as. The page tests reach the lesser ones under `/as-host/<variant>/`, variants
/// stacking (`/as-host/no-isolation/as-host/no-relaxed/…`); the page's relative URLs keep every request it makes
/// below the same prefix.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Host {
    /// Sends the two cross-origin isolation headers (`no-isolation`: a host that does not; the page then runs its
    /// single-threaded engine).
    isolation: bool,
    /// Has the relaxed-SIMD engine builds (`no-relaxed`: a host that lacks their files; the page then falls back to
    /// the plain-SIMD ones).
    relaxed_builds: bool,
}

impl Host {
    const FULL: Host = Host { isolation: true, relaxed_builds: true };

    /// The host `url` asks for, and the URL below its prefix.
    fn of(mut url: &str) -> (Host, &str) {
        let mut host = Host::FULL;
        loop {
            if let Some(rest) = url.strip_prefix("/as-host/no-isolation/") {
                host.isolation = false;
                url = &url[url.len() - rest.len() - 1..];
            } else if let Some(rest) = url.strip_prefix("/as-host/no-relaxed/") {
                host.relaxed_builds = false;
                url = &url[url.len() - rest.len() - 1..];
            } else {
                return (host, url);
            }
        }
    }

    /// Whether this host has the file at `path` (below the root).
    fn has(&self, path: &Path) -> bool {
        self.relaxed_builds || !path.iter().any(|part| part == "pkg-relaxed" || part == "pkg-threads-relaxed")
    }
}

/// A response: status, its reason phrase, the body's type and the body (sent with its length, which the page
/// shows download progress against).
struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply { status, reason, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }
}

/// The response to a request for `url` under `root`.
fn respond(root: &Path, url: &str, host: Host) -> Reply {
    let Some(path) = resolve(root, url).filter(|p| host.has(p.strip_prefix(root).unwrap_or(p))) else {
        return Reply::text(404, "Not Found", "not found");
    };
    match std::fs::read(&path) {
        Ok(body) => Reply { status: 200, reason: "OK", content_type: mime(&path), body },
        Err(_) => Reply::text(500, "Internal Server Error", "cannot read file"),
    }
}

/// The MIME type of a file the page serves (`application/wasm` is required for streaming compilation).
fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Resolves a request path inside `root`, refusing anything that climbs out of it.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part.contains('\\') || part.starts_with('.') {
            return None;
        }
        out.push(part);
    }
    if out.is_dir() {
        out.push("index.html");
    }
    out.is_file().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root_and_get_their_mime_type() {
        let root = std::env::temp_dir().join(format!("xtask-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("index.html"), "x").unwrap();
        std::fs::write(root.join("pkg/a.wasm"), "x").unwrap();
        assert_eq!(resolve(&root, "/?r=4"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/pkg/a.wasm"), Some(root.join("pkg/a.wasm")));
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/pkg/../../x"), None);
        assert_eq!(resolve(&root, "/missing.js"), None);
        assert_eq!(mime(Path::new("a.wasm")), "application/wasm");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn lesser_hosts_are_served_below_their_prefix() {
        assert_eq!(Host::of("/?r=4"), (Host::FULL, "/?r=4"));
        let plain = Host { isolation: false, ..Host::FULL };
        assert_eq!(Host::of("/as-host/no-isolation/js/a.js"), (plain, "/js/a.js"));
        let bare = Host { isolation: false, relaxed_builds: false };
        assert_eq!(Host::of("/as-host/no-relaxed/as-host/no-isolation/?x"), (bare, "/?x"));
        assert_eq!(Host::of("/as-host/other/x"), (Host::FULL, "/as-host/other/x"));
        assert!(!bare.has(Path::new("pkg-threads-relaxed/m.wasm")) && bare.has(Path::new("pkg-threads/m.wasm")));
        assert!(Host::FULL.has(Path::new("pkg-relaxed/m.wasm")));
    }

    #[test]
    fn a_lesser_host_omits_the_isolation_headers_or_the_relaxed_builds() {
        let root = std::env::temp_dir().join(format!("xtask-serve-hosts-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pkg-relaxed")).unwrap();
        std::fs::write(root.join("index.html"), "hello").unwrap();
        std::fs::write(root.join("pkg-relaxed/m.wasm"), "wasm").unwrap();
        let addr = spawn_server(root.clone(), 0).unwrap();
        let isolated = get(addr, "/");
        assert!(isolated.contains("Cross-Origin-Opener-Policy: same-origin") && isolated.ends_with("hello"));
        let plain = get(addr, "/as-host/no-isolation/");
        assert!(!plain.contains("Cross-Origin") && plain.ends_with("hello"), "{plain}");
        assert!(get(addr, "/pkg-relaxed/m.wasm").ends_with("wasm"));
        assert!(get(addr, "/as-host/no-relaxed/pkg-relaxed/m.wasm").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "/as-host/no-relaxed/").contains("Cross-Origin-Embedder-Policy: require-corp"));
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A client that stops reading a large response (a stalled tab, a test killed mid-download) must not hold up
    /// the next request.
    #[test]
    fn a_stalled_download_does_not_block_other_requests() {
        use std::io::{Read, Write};
        let root = std::env::temp_dir().join(format!("xtask-serve-stall-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("big.bin"), vec![7u8; 64 << 20]).unwrap();
        std::fs::write(root.join("index.html"), "hello").unwrap();
        let addr = spawn_server(root.clone(), 0).unwrap();
        let mut stalled = std::net::TcpStream::connect(addr).unwrap();
        stalled.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut other = std::net::TcpStream::connect(addr).unwrap();
        other.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        other.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        other.read_to_string(&mut answer).expect("the second request is answered while the first is stalled");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"), "{answer}");
        drop(stalled);
        std::fs::remove_dir_all(root).unwrap();
    }

    /// `GET path` on a new connection, as the whole response.
    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").as_bytes()).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("answered and closed");
        answer
    }

    /// A page load's worth of requests many times over, all at once, while other clients hold connections open
    /// without sending anything: every request is answered whole, with its length, the isolation headers, and the
    /// connection closed (the reading above ends only at the close).
    #[test]
    fn every_request_is_answered_while_others_are_open_and_idle() {
        let root = std::env::temp_dir().join(format!("xtask-serve-many-{}", std::process::id()));
        std::fs::create_dir_all(root.join("js")).unwrap();
        std::fs::write(root.join("index.html"), "hello").unwrap();
        let script = "x".repeat(100_000);
        std::fs::write(root.join("js/a.js"), &script).unwrap();
        let addr = spawn_server(root.clone(), 0).unwrap();
        let idle: Vec<_> = (0..32).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let clients: Vec<_> = (0..200)
            .map(|i| std::thread::spawn(move || get(addr, if i % 2 == 0 { "/js/a.js?v=1" } else { "/" })))
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            let answer = c.join().unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
            assert!(head.contains("Connection: close") && head.contains("Cross-Origin-Embedder-Policy: require-corp"));
            let want = if i % 2 == 0 { script.as_str() } else { "hello" };
            assert!(head.contains(&format!("Content-Length: {}", want.len())), "{head}");
            assert_eq!(body, want);
        }
        assert!(get(addr, "/missing.js").starts_with("HTTP/1.1 404"));
        drop(idle);
        std::fs::remove_dir_all(root).unwrap();
    }
}
