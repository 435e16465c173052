//! A fault-injecting HTTP/1.1 proxy for the S3 tests: it sits between the real client (the
//! `stowage` binary) and the real S3 server and, on a deterministic schedule, answers 503
//! SlowDown or 500 itself, cuts response bodies short, resets connections before or after the
//! server saw the request, or holds requests back for a while.
//!
//! It reads each request whole before deciding, so the server never sees half a request: what
//! reaches the server is exactly what a healthy network would deliver.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One thing the proxy can do to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answer 503 SlowDown without asking the server.
    SlowDown,
    /// Answer 500 InternalError without asking the server.
    InternalError,
    /// Reset the connection without asking the server.
    ResetBefore,
    /// Let the server handle the request, then reset the connection instead of answering.
    ResetAfter,
    /// Forward, then send the response head and only half of its body, then close.
    TruncateBody,
    /// Forward, then send half of the body with a Content-Length that matches it: a store that
    /// lies. Only the reader's own checks can notice.
    ShortBodyConsistent,
    /// Forward, then flip one byte in the middle of the body.
    CorruptBody,
    /// Wait this many milliseconds, then forward.
    Delay(u64),
}

/// Which requests get which fault.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Forward everything untouched.
    None,
    /// Request number n (counting from 0) gets a fault when hash(seed, n) falls under
    /// `per_mille`; the fault is picked from `faults` by another hash. Deterministic for a given
    /// request order.
    Rate {
        /// Seed of the hash.
        seed: u64,
        /// Share of requests that get a fault, in thousandths.
        per_mille: u64,
        /// The faults to pick from.
        faults: Vec<Fault>,
    },
    /// The first `limit` requests whose method and path match get `fault` (`u64::MAX`: a
    /// permanent failure).
    Matching {
        /// The HTTP method to match (`None`: any).
        method: Option<&'static str>,
        /// A substring the request path must contain.
        path_contains: String,
        /// The fault they get.
        fault: Fault,
        /// How many matching requests get it.
        limit: u64,
    },
}

/// What the proxy saw and did.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Requests received.
    pub requests: u64,
    /// Requests that got a fault.
    pub faults: u64,
    /// Requests by HTTP method.
    pub by_method: std::collections::BTreeMap<String, u64>,
    /// Faults by kind (`Fault`'s debug name).
    pub by_fault: std::collections::BTreeMap<String, u64>,
    /// "METHOD PATH", in arrival order.
    pub log: Vec<String>,
}

struct State {
    upstream: SocketAddr,
    schedule: Mutex<Schedule>,
    next: AtomicU64,
    counts: Mutex<Counts>,
    stop: AtomicBool,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://HOST:PORT`).
    pub fn start(upstream: &str, schedule: Schedule) -> FaultProxy {
        let hostport = upstream
            .strip_prefix("http://")
            .expect("the proxy speaks plain http")
            .trim_end_matches('/');
        let upstream: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .expect("upstream address")
            .next()
            .expect("upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            schedule: Mutex::new(schedule),
            next: AtomicU64::new(0),
            counts: Mutex::new(Counts::default()),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = st.clone();
                    thread::spawn(move || {
                        let _ = serve(conn, &st);
                    });
                }
            })
            .unwrap();
        FaultProxy { addr, state }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the schedule for the requests from now on.
    pub fn set_schedule(&self, s: Schedule) {
        *self.state.schedule.lock().unwrap() = s;
    }

    /// What the proxy saw and did so far.
    pub fn counts(&self) -> Counts {
        self.state.counts.lock().unwrap().clone()
    }

    /// "METHOD PATH" of every request so far.
    pub fn log(&self) -> Vec<String> {
        self.state.counts.lock().unwrap().log.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl State {
    fn decide(&self, method: &str, path: &str) -> Option<Fault> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let fault = match &mut *self.schedule.lock().unwrap() {
            Schedule::None => None,
            Schedule::Rate {
                seed,
                per_mille,
                faults,
            } => {
                let h = mix(*seed ^ mix(n));
                (h % 1000 < *per_mille && !faults.is_empty())
                    .then(|| faults[(mix(h) % faults.len() as u64) as usize])
            }
            Schedule::Matching {
                method: m,
                path_contains,
                fault,
                limit,
            } => {
                let hit = *limit > 0
                    && m.is_none_or(|m| m == method)
                    && path.contains(path_contains.as_str());
                if hit {
                    *limit -= 1;
                }
                hit.then_some(*fault)
            }
        };
        let mut c = self.counts.lock().unwrap();
        c.requests += 1;
        c.log.push(format!("{method} {path}"));
        *c.by_method.entry(method.to_string()).or_default() += 1;
        if let Some(f) = fault {
            c.faults += 1;
            let name = match f {
                Fault::Delay(_) => "Delay".to_string(),
                f => format!("{f:?}"),
            };
            *c.by_fault.entry(name).or_default() += 1;
        }
        fault
    }
}

/// A request or response head and body, as raw bytes ready to forward.
struct Message {
    head: Vec<u8>,
    first_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A start line and its headers.
type Head = (String, Vec<(String, String)>);

/// Reads a head (up to the empty line). `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let first = first.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "head cut short",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first, headers)))
}

fn encode_head(first: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut h = format!("{first}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Reads a body framed by Content-Length or chunked encoding (kept raw, framing included), or,
/// when `until_eof`, everything up to the end of the stream.
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    until_eof: bool,
) -> io::Result<Vec<u8>> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut raw = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            raw.extend_from_slice(line.as_bytes());
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t)?;
                    raw.extend_from_slice(t.as_bytes());
                    if t.trim().is_empty() {
                        return Ok(raw);
                    }
                }
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            raw.extend_from_slice(&chunk);
        }
    }
    if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_request(
    r: &mut BufReader<TcpStream>,
    client: &mut TcpStream,
) -> io::Result<Option<Message>> {
    let Some((first_line, mut headers)) = read_head(r)? else {
        return Ok(None);
    };
    if let Some(i) = headers.iter().position(|(k, v)| {
        k.eq_ignore_ascii_case("expect") && v.eq_ignore_ascii_case("100-continue")
    }) {
        headers.remove(i);
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(r, &headers, false)?;
    Ok(Some(Message {
        head: encode_head(&first_line, &headers),
        first_line,
        headers,
        body,
    }))
}

fn read_response(r: &mut BufReader<TcpStream>, method: &str) -> io::Result<Message> {
    loop {
        let Some((first_line, headers)) = read_head(r)? else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        };
        let status: u16 = first_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            continue;
        }
        let no_body = method == "HEAD" || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else {
            read_body(r, &headers, true)?
        };
        return Ok(Message {
            head: encode_head(&first_line, &headers),
            first_line,
            headers,
            body,
        });
    }
}

fn error_response(status: u16, reason: &str, code: &str, close: bool) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
    );
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    r.push_str(&body);
    r.into_bytes()
}

fn reset(s: &TcpStream) {
    // SO_LINGER 0 makes close() send RST.
    let _ = socket_linger_zero(s);
    let _ = s.shutdown(Shutdown::Both);
}

fn socket_linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &l)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Serves one client connection, request after request.
fn serve(client: TcpStream, st: &State) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut client_w = client.try_clone()?;
    let mut client_r = BufReader::new(client.try_clone()?);
    let mut upstream: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while let Some(req) = read_request(&mut client_r, &mut client_w)? {
        let mut parts = req.first_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let fault = st.decide(&method, &path);
        match fault {
            Some(Fault::SlowDown) => {
                client_w.write_all(&error_response(503, "Slow Down", "SlowDown", false))?;
                continue;
            }
            Some(Fault::InternalError) => {
                client_w.write_all(&error_response(
                    500,
                    "Internal Server Error",
                    "InternalError",
                    false,
                ))?;
                continue;
            }
            Some(Fault::ResetBefore) => {
                reset(&client);
                return Ok(());
            }
            Some(Fault::Delay(ms)) => thread::sleep(Duration::from_millis(ms)),
            _ => {}
        }
        // Forward, on a kept-alive upstream connection when the server allows it.
        let resp = {
            let mut attempt = 0;
            loop {
                attempt += 1;
                if upstream.is_none() {
                    let s = TcpStream::connect(st.upstream)?;
                    s.set_nodelay(true)?;
                    let r = BufReader::new(s.try_clone()?);
                    upstream = Some((s, r));
                }
                let (us, ur) = upstream.as_mut().unwrap();
                let sent = us
                    .write_all(&req.head)
                    .and_then(|_| us.write_all(&req.body));
                match sent.and_then(|_| read_response(ur, &method)) {
                    Ok(r) => break r,
                    // A kept-alive connection the server closed meanwhile: once more, fresh.
                    Err(_) if attempt == 1 => upstream = None,
                    Err(e) => return Err(e),
                }
            }
        };
        let upstream_closes = resp.first_line.starts_with("HTTP/1.0")
            && !resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"))
            || resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if upstream_closes {
            upstream = None;
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        match fault {
            Some(Fault::ResetAfter) => {
                reset(&client);
                return Ok(());
            }
            Some(Fault::TruncateBody) if resp.body.len() > 1 && !chunked => {
                client_w.write_all(&resp.head)?;
                client_w.write_all(&resp.body[..resp.body.len() / 2])?;
                client_w.flush()?;
                reset(&client);
                return Ok(());
            }
            Some(Fault::ShortBodyConsistent) if resp.body.len() > 1 && !chunked => {
                let half = resp.body.len() / 2;
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        if k.eq_ignore_ascii_case("content-length") {
                            (k.clone(), half.to_string())
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect();
                client_w.write_all(&encode_head(&resp.first_line, &headers))?;
                client_w.write_all(&resp.body[..half])?;
            }
            Some(Fault::CorruptBody) if !resp.body.is_empty() && !chunked => {
                let mut body = resp.body.clone();
                let mid = body.len() / 2;
                body[mid] ^= 0x55;
                client_w.write_all(&resp.head)?;
                client_w.write_all(&body)?;
            }
            _ => {
                client_w.write_all(&resp.head)?;
                client_w.write_all(&resp.body)?;
            }
        }
        client_w.flush()?;
        if upstream_closes {
            // The server framed its answer by closing; so must we.
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}
