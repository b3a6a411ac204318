//! Peer engines for `koru-jit bench --peers`: Rhai and LuaJIT in-process (feature `peers`),
//! Lua 5.4 and CPython as child processes speaking a line protocol on stdin/stdout, so every
//! engine runs the same workloads interleaved in one run.
//!
//! The protocol: the child prints `ready <version>`; then for each workload name it reads, it
//! runs one round, timing it itself, and prints `ok <operations> <ns>`, `skip` (a workload it
//! does not run) or `error <message>`. The parent's pipe round trip is outside the timed span.

#[cfg(feature = "peers")]
pub mod lua;
#[cfg(feature = "peers")]
pub mod rhai;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A peer engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Rhai,
    Lua54,
    LuaJit,
    /// LuaJIT with its JIT off (`jit.off()`): LuaJIT's own interpreter.
    LuaJitInterp,
    CPython,
}

impl Peer {
    pub const ALL: [Peer; 5] = [
        Peer::Rhai,
        Peer::Lua54,
        Peer::LuaJit,
        Peer::LuaJitInterp,
        Peer::CPython,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Rhai => "rhai",
            Peer::Lua54 => "lua5.4",
            Peer::LuaJit => "luajit",
            Peer::LuaJitInterp => "luajit-interp",
            Peer::CPython => "cpython",
        }
    }

    /// The workloads peers run: the nested-loop and three-step workloads, plus sum-fold.
    pub fn runs(workload: &str) -> bool {
        matches!(
            workload,
            "nested-loop"
                | "nested-loop-typed"
                | "three-step-cold"
                | "three-step-cached"
                | "sum-fold"
                | "collatz"
                | "fib-pair"
                | "primes"
                | "float-series"
                | "str-machine"
        )
    }
}

/// One round's result: operations done and, when the peer timed itself, the nanoseconds.
pub struct PeerSample {
    pub operations: u64,
    pub ns: Option<f64>,
}

/// A started peer, ready to run rounds.
pub enum PeerEngine {
    #[cfg(feature = "peers")]
    Rhai(Box<rhai::RhaiPeer>),
    #[cfg(feature = "peers")]
    Lua(Box<lua::LuaPeer>),
    Child(ChildPeer),
}

impl PeerEngine {
    /// Starts a peer; `Err` says why it is unavailable (not built with `--features peers`, no
    /// `python3`, the Lua 5.4 child failed to build, ...).
    pub fn start(peer: Peer, python: &str) -> Result<(PeerEngine, String), String> {
        match peer {
            #[cfg(feature = "peers")]
            Peer::Rhai => {
                let engine = rhai::RhaiPeer::new().map_err(|e| e.to_string())?;
                Ok((
                    PeerEngine::Rhai(Box::new(engine)),
                    rhai::RhaiPeer::version(),
                ))
            }
            #[cfg(feature = "peers")]
            Peer::LuaJit => {
                let engine = lua::LuaPeer::new().map_err(|e| e.to_string())?;
                let version = engine.version();
                Ok((PeerEngine::Lua(Box::new(engine)), version))
            }
            #[cfg(feature = "peers")]
            Peer::LuaJitInterp => {
                let engine = lua::LuaPeer::with_jit(false).map_err(|e| e.to_string())?;
                let version = engine.version();
                Ok((PeerEngine::Lua(Box::new(engine)), version))
            }
            #[cfg(feature = "peers")]
            Peer::Lua54 => {
                let binary = build_lua54()?;
                ChildPeer::spawn(Command::new(binary))
                    .map(|(child, version)| (PeerEngine::Child(child), version))
            }
            #[cfg(not(feature = "peers"))]
            Peer::Rhai | Peer::LuaJit | Peer::LuaJitInterp | Peer::Lua54 => {
                Err("build with `--features peers` to run this peer".to_string())
            }
            Peer::CPython => {
                let mut command = Command::new(python);
                command.arg("-u").arg("-c").arg(include_str!("bench.py"));
                ChildPeer::spawn(command)
                    .map(|(child, version)| (PeerEngine::Child(child), version))
            }
        }
    }

    /// Runs one round of `workload`: `Ok(None)` when this peer does not run it.
    pub fn round(&mut self, workload: &str) -> Result<Option<PeerSample>, String> {
        #[cfg(feature = "peers")]
        fn untimed(operations: Option<u64>) -> Option<PeerSample> {
            operations.map(|operations| PeerSample {
                operations,
                ns: None,
            })
        }
        match self {
            #[cfg(feature = "peers")]
            PeerEngine::Rhai(engine) => engine
                .round(workload)
                .map(untimed)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "peers")]
            PeerEngine::Lua(engine) => engine
                .round(workload)
                .map(untimed)
                .map_err(|e| e.to_string()),
            PeerEngine::Child(child) => child.round(workload),
        }
    }
}

/// A peer in a child process (see the module docs for the protocol).
pub struct ChildPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildPeer {
    fn spawn(mut command: Command) -> Result<(ChildPeer, String), String> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(format!("`{program}` has no pipes"));
        };
        let mut peer = ChildPeer {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        // A program that cannot be started may still be spawned: under qemu-user (the aarch64
        // suite) the exec error of a missing program is not reported to the parent, whose child
        // then exits at once. Either way the row names the program and why it stopped.
        let line = peer
            .read_line()
            .map_err(|e| format!("`{program}` did not start: {e} ({})", peer.exit_status()))?;
        match line.strip_prefix("ready ") {
            Some(version) => Ok((peer, version.to_string())),
            None => Err(format!("`{program}` did not start: {line}")),
        }
    }

    /// How the child ended, waiting up to a second for it after its output closed (`Drop` kills
    /// a child that closed its output and kept running).
    fn exit_status(&mut self) -> String {
        let waited = std::time::Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if waited.elapsed() < std::time::Duration::from_secs(1) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Ok(None) => return "still running".to_string(),
                Err(e) => return e.to_string(),
            }
        }
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the peer process exited".to_string()),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) => Err(format!("reading from the peer process: {e}")),
        }
    }

    fn round(&mut self, workload: &str) -> Result<Option<PeerSample>, String> {
        writeln!(self.stdin, "{workload}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("writing to the peer process: {e}"))?;
        let line = self.read_line()?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ok") => {
                let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
                match (number(), number()) {
                    (Some(operations), Some(ns)) if operations > 0 => Ok(Some(PeerSample {
                        operations,
                        ns: Some(ns as f64),
                    })),
                    _ => Err(format!("malformed answer from the peer: {line}")),
                }
            }
            Some("skip") => Ok(None),
            Some("error") => Err(line["error".len()..].trim().to_string()),
            _ => Err(format!("malformed answer from the peer: {line}")),
        }
    }
}

impl Drop for ChildPeer {
    fn drop(&mut self) {
        // The child may be mid-round or stuck: kill it rather than wait for its loop to end.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the Lua 5.4 child (`benches/peers/lua54`, its own cargo workspace) with the cargo
/// that runs this build, and returns the binary's path. A no-op when it is up to date.
#[cfg(feature = "peers")]
fn build_lua54() -> Result<std::path::PathBuf, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/lua54");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building the Lua 5.4 peer: cargo build --release --manifest-path {}/Cargo.toml",
        dir.display()
    );
    // An explicit target directory, so CARGO_TARGET_DIR or a cargo config cannot move the
    // binary away from where it is looked for.
    let target = dir.join("target");
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo to build the Lua 5.4 peer: {e}"))?;
    if !status.success() {
        return Err(format!("building the Lua 5.4 peer failed ({status})"));
    }
    Ok(target.join("release/koru-jit-peer-lua54"))
}
