//! What the kernel says about one of our threads, from `/proc/self/task/TID/`.
//!
//! Read through a directory file descriptor that `ThreadHandle::current`
//! opened on the thread itself: the descriptor is bound to *that* task, so once
//! it exits every read fails (`ENOENT`/`ESRCH`) even if its thread id is reused.
//!
//! What `syscall` prints (Linux 6.x, x86_64; measured, see the note):
//!
//! * blocked in a system call: `NR a0 a1 a2 a3 a4 a5 SP PC` (decimal number,
//!   then eight hex words; `PC` is the address right after the `syscall`
//!   instruction, `SP` the user stack pointer at entry);
//! * blocked outside a system call (a page fault waiting on userfaultfd, a
//!   stop): `-1 SP PC` (`PC` is the faulting instruction itself);
//! * running or runnable (also: preempted in user code): `running`.
//!
//! The kernel only answers with registers after checking, twice, that the task
//! is not running and did not run in between (`wait_task_inactive`), so one
//! read is one consistent `(nr, args, sp, pc)`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The parsed `syscall` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyscallState {
    /// Running or runnable: its registers change all the time.
    Running,
    /// Blocked inside system call `nr` (arguments in `args`); `pc` is right after the `syscall` instruction.
    InSyscall {
        /// System call number.
        nr: i64,
        /// Its six arguments.
        args: [u64; 6],
        /// User stack pointer.
        sp: u64,
        /// User program counter (after the system call instruction).
        pc: u64,
    },
    /// Blocked, but not in a system call (page fault, stop): `pc` is exact.
    Blocked {
        /// User stack pointer.
        sp: u64,
        /// User program counter.
        pc: u64,
    },
}

/// The fields of `status` that a capture needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// Signals pending for this thread (`SigPnd`).
    pub(crate) sig_pnd: u64,
    /// Signals pending for the whole process (`ShdPnd`).
    pub(crate) shd_pnd: u64,
    /// Signals the thread blocks (`SigBlk`).
    pub(crate) sig_blk: u64,
    /// Signals with a handler (`SigCgt`).
    pub(crate) sig_cgt: u64,
    /// `voluntary_ctxt_switches + nonvoluntary_ctxt_switches`: changes whenever
    /// the thread was switched out, i.e. whenever it ran and stopped again.
    pub(crate) switches: u64,
}

/// Reads the file `name` of the task directory `dir` into `buf`; returns the bytes read.
fn read_file<'b>(dir: BorrowedFd<'_>, name: &CStr, buf: &'b mut [u8]) -> std::io::Result<&'b [u8]> {
    // SAFETY: openat on a valid directory descriptor with a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut len = 0;
    let result = loop {
        if len == buf.len() {
            break Ok(());
        }
        // SAFETY: reads into the unused tail of `buf`, which is valid for writes.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        match n {
            0 => break Ok(()),
            n if n > 0 => len += n as usize,
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    break Err(err);
                }
            }
        }
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    result.map(|()| &buf[..len])
}

/// Reads and parses `syscall`.
pub(crate) fn syscall(dir: BorrowedFd<'_>) -> std::io::Result<SyscallState> {
    let mut buf = [0u8; 256];
    let text = read_file(dir, c"syscall", &mut buf)?;
    parse_syscall(text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "unexpected syscall file: {:?}",
                String::from_utf8_lossy(text)
            ),
        )
    })
}

/// Parses the text of a `syscall` file.
pub(crate) fn parse_syscall(text: &[u8]) -> Option<SyscallState> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if text == "running" {
        return Some(SyscallState::Running);
    }
    let mut words = text.split_ascii_whitespace();
    let nr: i64 = words.next()?.parse().ok()?;
    let mut hex = [0u64; 8];
    let mut n = 0;
    for word in words {
        let digits = word.strip_prefix("0x")?;
        *hex.get_mut(n)? = u64::from_str_radix(digits, 16).ok()?;
        n += 1;
    }
    match (nr, n) {
        (nr, 8) if nr >= 0 => Some(SyscallState::InSyscall {
            nr,
            args: [hex[0], hex[1], hex[2], hex[3], hex[4], hex[5]],
            sp: hex[6],
            pc: hex[7],
        }),
        (-1, 2) => Some(SyscallState::Blocked {
            sp: hex[0],
            pc: hex[1],
        }),
        _ => None,
    }
}

/// Reads and parses `status`.
pub(crate) fn status(dir: BorrowedFd<'_>) -> std::io::Result<Status> {
    let mut buf = [0u8; 4096];
    let text = read_file(dir, c"status", &mut buf)?;
    parse_status(text).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected status file")
    })
}

/// Parses the text of a `status` file.
pub(crate) fn parse_status(text: &[u8]) -> Option<Status> {
    let text = std::str::from_utf8(text).ok()?;
    let mut status = Status::default();
    let mut seen = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let hex = || u64::from_str_radix(value, 16).ok();
        match key {
            "SigPnd" => (status.sig_pnd, seen) = (hex()?, seen | 1),
            "ShdPnd" => (status.shd_pnd, seen) = (hex()?, seen | 2),
            "SigBlk" => (status.sig_blk, seen) = (hex()?, seen | 4),
            "SigCgt" => (status.sig_cgt, seen) = (hex()?, seen | 8),
            "voluntary_ctxt_switches" | "nonvoluntary_ctxt_switches" => {
                status.switches += value.parse::<u64>().ok()?;
                seen |= 16;
            }
            _ => {}
        }
    }
    (seen == 31).then_some(status)
}

/// The bit of signal `sig` in a `/proc` signal mask.
pub(crate) fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse_syscall(b"running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall(b"-1 0x7fe5a069b9d0 0x558a257206bc\n"),
            Some(SyscallState::Blocked {
                sp: 0x7fe5a069b9d0,
                pc: 0x558a257206bc
            })
        );
        assert_eq!(
            parse_syscall(
                b"7 0x7feb19f9a9dc 0x1 0x12c 0x2 0x0 0x0 0x7feb19f9a9a0 0x7feb1a09b26f\n"
            ),
            Some(SyscallState::InSyscall {
                nr: 7,
                args: [0x7feb19f9a9dc, 1, 0x12c, 2, 0, 0],
                sp: 0x7feb19f9a9a0,
                pc: 0x7feb1a09b26f
            })
        );
        assert_eq!(parse_syscall(b"7 0x1"), None);
        assert_eq!(parse_syscall(b""), None);
    }

    #[test]
    fn parses_status() {
        let text = b"Name:\tx\nState:\tS (sleeping)\nSigQ:\t0/96365\nSigPnd:\t0000000000000000\n\
ShdPnd:\t0000000000000000\nSigBlk:\t0000002000000000\nSigIgn:\t0000000000001000\n\
SigCgt:\t0000000100000440\nvoluntary_ctxt_switches:\t3\nnonvoluntary_ctxt_switches:\t4\n";
        let s = parse_status(text).unwrap();
        assert_eq!(s.sig_blk, sig_bit(38));
        assert_eq!(s.switches, 7);
        assert_eq!(s.sig_cgt, 0x100000440);
    }
}
