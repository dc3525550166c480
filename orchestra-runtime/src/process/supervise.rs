//! Starting a container's process, signalling it and telling whether it still runs.
//!
//! A container runs under a small `/bin/sh` shim that leads the container's process group, runs
//! the command, and writes its exit code to a file when it ends: the code survives the agent, so
//! an agent restarted while the container ran still learns how it ended. The shim traps SIGTERM
//! with a no-op handler (handlers, unlike ignored signals, are not inherited across `exec`), so
//! the signal sent to the group ends the command while the shim lives on to record its code.
//!
//! A container is started *gated*: the shim first waits for its stdin to close, so that the
//! runtime can move it into its cgroup and start copying its output before the command runs —
//! the command, and all it starts, are then in the cgroup from their first instruction, and no
//! output of a command that ends at once is lost (a FIFO's unread data goes with its last
//! holder).
//!
//! The command's output goes to two FIFOs (stdout, stderr) that the container holds open for
//! reading as well as writing: its writes never fail for want of a reader while the agent is
//! away, and the agent (re)opens them to copy the output into the log file.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::fs::{CWD, FileType, Mode};
use rustix::process::{Pid, Signal};

/// The shim: `$0` is the exit file, the rest the command. It exits with the command's code.
/// `mv` is looked for in the host's directories, whatever `PATH` the container has (an image's
/// names its own).
const SHIM: &str = "trap : TERM INT; \"$@\"; code=$?; echo $code > \"$0.tmp\" && \
     PATH=/usr/bin:/bin mv \"$0.tmp\" \"$0\"; exit $code";

/// What the shim runs first: it waits for its stdin to close, then reads from `/dev/null`.
const GATE: &str = "read -r _ || :; exec </dev/null; ";

/// The `PATH` a container gets when its environment sets none (Docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The files of one container's process in the runtime's state directory.
#[derive(Clone, Debug)]
pub(crate) struct ProcessFiles {
    pub(crate) stdout: PathBuf,
    pub(crate) stderr: PathBuf,
    pub(crate) exit_code: PathBuf,
}

impl ProcessFiles {
    pub(crate) fn in_directory(directory: &Path) -> ProcessFiles {
        ProcessFiles {
            stdout: directory.join("stdout.fifo"),
            stderr: directory.join("stderr.fifo"),
            exit_code: directory.join("exit-code"),
        }
    }

    /// The exit code the shim recorded, if the command ended.
    pub(crate) fn recorded_exit_code(&self) -> Option<i32> {
        std::fs::read_to_string(&self.exit_code)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

fn make_fifo(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        .map_err(io::Error::from)
}

/// Starts `argv` under the shim in its own process group, with exactly `env` (plus a default
/// `PATH`) and `working_dir`, its output to the FIFOs of `files` (created here). The shim waits
/// for [`open_gate`] before it runs the command.
pub(crate) fn spawn(
    argv: &[OsString],
    env: &[(String, String)],
    working_dir: Option<&Path>,
    files: &ProcessFiles,
) -> io::Result<tokio::process::Child> {
    make_fifo(&files.stdout)?;
    make_fifo(&files.stderr)?;
    let _ = std::fs::remove_file(&files.exit_code);
    let open = |path: &Path| OpenOptions::new().read(true).write(true).open(path);
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!("{GATE}{SHIM}"))
        .arg(&files.exit_code)
        .args(argv)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::from(open(&files.stdout)?))
        .stderr(Stdio::from(open(&files.stderr)?))
        .process_group(0)
        .kill_on_drop(false);
    if !env.iter().any(|(name, _)| name == "PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    if let Some(directory) = working_dir {
        command.current_dir(directory);
    }
    command.spawn()
}

/// Lets the shim run its command (closes its stdin).
pub(crate) fn open_gate(child: &mut tokio::process::Child) {
    drop(child.stdin.take());
}

/// Sends `signal` to the process group led by `pid`. A group that is gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: Signal) -> io::Result<()> {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no process group {pid}"),
        ));
    };
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The start time (clock ticks since boot) of the live process `pid`, or `None` if there is no
/// such process or it is a zombie.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after it are
    // counted from its closing parenthesis. Field 3 is the state, field 22 the start time.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the process `pid` that started at `start` still runs.
pub(crate) fn is_alive(pid: u32, start: Option<u64>) -> bool {
    match (process_start(pid), start) {
        (Some(now), Some(recorded)) => now == recorded,
        (Some(_), None) => true,
        (None, _) => false,
    }
}
