//! A minimal blocking HTTP/1.1 client with keep-alive, for `koru-jit load` and the server's
//! tests: one request at a time on one connection, `Content-Length` or chunked bodies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection to `address` (`host:port`), reopened when the server closes it.
pub struct Client {
    address: String,
    stream: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

/// Per read and per write; and the most one answer may take in all (unless
/// [`Client::with_timeout`] says otherwise).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer body this client accepts.
const MAX_BODY: usize = 64 << 20;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl Client {
    /// `address` is `host:port`, or a URL `http://host:port[/...]`.
    pub fn new(address: &str) -> Client {
        let address = address
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Client {
            address,
            stream: None,
            timeout: TIMEOUT,
        }
    }

    /// A client whose connect, reads, writes and whole answers each time out after `timeout`.
    pub fn with_timeout(address: &str, timeout: Duration) -> Client {
        Client {
            timeout,
            ..Client::new(address)
        }
    }

    fn connection(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.stream.is_none() {
            let stream = self.connect()?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(BufReader::new(stream));
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Connects to the first address `address` resolves to that answers within the timeout.
    fn connect(&self) -> io::Result<TcpStream> {
        use std::net::ToSocketAddrs;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        for address in self.address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&address, self.timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends one request. If a kept-alive connection turns out to be closed before any byte of
    /// the answer arrived (the server closed it while idle), sends it once more on a new one;
    /// never after an answer started, so a request is not run twice.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, headers, body) {
            Ok(response) => Ok(response),
            Err((_, true)) if reused => {
                self.stream = None;
                self.try_request(method, path, headers, body)
                    .map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// `POST path` with a JSON body and an API key.
    pub fn post_json(&mut self, path: &str, key: &str, body: &str) -> io::Result<HttpResponse> {
        let auth = format!("Bearer {key}");
        self.request(
            "POST",
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    pub fn get(&mut self, path: &str, key: Option<&str>) -> io::Result<HttpResponse> {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.request("GET", path, &headers, b"")
    }

    /// On failure, also says whether no byte of an answer had arrived.
    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, (io::Error, bool)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        let timeout = self.timeout;
        let result = (|| {
            let stream = self.connection().map_err(|e| (e, true))?;
            let writer = stream.get_mut();
            writer
                .write_all(head.as_bytes())
                .and_then(|()| writer.write_all(body))
                .map_err(|e| (e, true))?;
            read_response(stream, timeout)
        })();
        match &result {
            Ok(response) if response.header("connection") == Some("close") => self.stream = None,
            Ok(_) => {}
            Err(_) => self.stream = None,
        }
        result
    }
}

fn read_line(stream: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(
    stream: &mut BufReader<TcpStream>,
    timeout: Duration,
) -> Result<HttpResponse, (io::Error, bool)> {
    let status_line = read_line(stream).map_err(|e| {
        let unanswered = e.kind() == io::ErrorKind::UnexpectedEof;
        (e, unanswered)
    })?;
    read_rest(stream, &status_line, timeout).map_err(|e| (e, false))
}

fn read_rest(
    stream: &mut BufReader<TcpStream>,
    status_line: &str,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let started = std::time::Instant::now();
    let in_time = || {
        if started.elapsed() > timeout {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the answer takes too long",
            ))
        } else {
            Ok(())
        }
    };
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line `{status_line}`")))?;
    let mut headers = Vec::new();
    loop {
        in_time()?;
        let line = read_line(stream)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header `{line}`")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            in_time()?;
            let size_line = read_line(stream)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size `{size_line}`")))?;
            if size == 0 {
                while !read_line(stream)?.is_empty() {}
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(invalid("the answer is larger than this client accepts"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..])?;
            read_line(stream)?;
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length `{length}`")))?;
        if length > MAX_BODY {
            return Err(invalid("the answer is larger than this client accepts"));
        }
        body.resize(length, 0);
        stream.read_exact(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
