//! A scripted test app (`grpc_app`, ...) run as a process and driven line by
//! line: it prints `ready` once it serves, and answers each command with
//! `ok COMMAND` once carried out.

use std::io::{BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A scripted app, killed when dropped.
pub struct Scripted {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Scripted {
    /// Starts `bin` with `env` (and neither `TASKSCOPE_REPORT` nor `RUST_LOG`
    /// from the test's environment), and waits for its `ready`.
    pub fn start(bin: &str, env: &[(&str, &str)]) -> Scripted {
        let mut cmd = Command::new(bin);
        cmd.env_remove("TASKSCOPE_REPORT")
            .env_remove("TASKSCOPE_TOKEN")
            .env_remove("TASKSCOPE_CONSOLE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let (stderr, reader) = crate::collect_stderr(child.stderr.take().unwrap());
        let mut app = Scripted {
            name: bin.rsplit('/').next().unwrap_or(bin).to_string(),
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            reader: Some(reader),
        };
        app.expect_line("ready");
        app
    }

    /// Waits for the line `want` on the app's stdout.
    pub fn expect_line(&mut self, want: &str) {
        let stderr = Arc::clone(&self.stderr);
        crate::next_line_where(
            &mut self.stdout,
            &format!("{} (waiting for {want:?})", self.name),
            || stderr.lock().unwrap().clone(),
            |line| (line == want).then_some(()),
        );
    }

    /// Sends a command and waits until the app has carried it out.
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.expect_line(&format!("ok {command}"));
    }

    /// The app's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the app wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the app; then its whole stderr is in [`Scripted::stderr`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.kill();
    }
}
