//! Reading our own process's memory without ever faulting.
//!
//! The unwinder follows saved stack pointers and frame pointers that may be
//! garbage (a frame pointer that is not one, a stack that is being torn down).
//! A plain load from such an address would raise SIGSEGV in the capturer. So
//! every read goes through `process_vm_readv` on our own pid, which returns
//! `EFAULT` for an unmapped address instead; where that system call is refused
//! (a seccomp filter, an old kernel) a `pread` of `/proc/self/mem` does the
//! same. Both are allowed on our own process whatever `ptrace_scope` says
//! (the kernel's `ptrace_may_access` lets a thread group read itself).
//!
//! Reads are by whole 4 KiB pages into a small direct-mapped cache that is
//! allocated once: a walk of 30-60 frames touches a handful of pages, and
//! nothing is allocated while the target thread is paused.

use std::os::fd::{AsRawFd, OwnedFd};

/// Page size used for the cache (reads never need the real page size: a
/// 4 KiB-aligned block never straddles a real page boundary).
const PAGE: usize = 4096;
/// Cache slots.
const SLOTS: usize = 64;

/// How memory is read.
enum Method {
    /// `process_vm_readv(getpid(), ...)`.
    VmReadv,
    /// `pread(/proc/self/mem)`.
    ProcMem(OwnedFd),
}

/// A fault-free reader of this process's memory with a page cache.
pub(crate) struct MemReader {
    pid: libc::pid_t,
    method: Method,
    /// Page address of each slot, `usize::MAX` when empty.
    tags: [usize; SLOTS],
    pages: Box<[[u8; PAGE]; SLOTS]>,
    /// Pages read from the kernel since the last [`MemReader::reset`].
    pub(crate) pages_read: u32,
}

impl MemReader {
    /// A reader, probing which method works here.
    pub(crate) fn new() -> std::io::Result<MemReader> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut reader = MemReader {
            pid,
            method: Method::VmReadv,
            tags: [usize::MAX; SLOTS],
            pages: vec![[0u8; PAGE]; SLOTS]
                .into_boxed_slice()
                .try_into()
                .map_err(|_| std::io::Error::other("page cache"))?,
            pages_read: 0,
        };
        let probe = 0x1234_5678_u64;
        let addr = &raw const probe as usize;
        let mut out = [0u8; 8];
        if reader.read_raw(addr, &mut out).is_ok() && u64::from_ne_bytes(out) == probe {
            return Ok(reader);
        }
        // SAFETY: open with a NUL-terminated path.
        let fd =
            unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        reader.method = Method::ProcMem(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
        if reader.read_raw(addr, &mut out).is_ok() && u64::from_ne_bytes(out) == probe {
            Ok(reader)
        } else {
            Err(std::io::Error::other(
                "neither process_vm_readv nor /proc/self/mem can read this process's memory",
            ))
        }
    }

    /// Forgets the cached pages (memory may have changed since).
    pub(crate) fn reset(&mut self) {
        self.tags = [usize::MAX; SLOTS];
        self.pages_read = 0;
    }

    /// Copies `out.len()` bytes at `addr` into `out`, or fails without touching the address.
    #[allow(clippy::result_unit_err)] // the shape framehop's reader callback wants
    pub(crate) fn read_raw(&self, addr: usize, out: &mut [u8]) -> Result<(), ()> {
        read_memory(self.pid, &self.method, addr, out)
    }

    /// The 8-byte word at `addr` (any alignment), through the cache.
    #[allow(clippy::result_unit_err)] // framehop's `FnMut(u64) -> Result<u64, ()>`
    pub(crate) fn read_u64(&mut self, addr: u64) -> Result<u64, ()> {
        let addr = usize::try_from(addr).map_err(|_| ())?;
        let end = addr.checked_add(8).ok_or(())?;
        let first = addr & !(PAGE - 1);
        let mut bytes = [0u8; 8];
        if (end - 1) & !(PAGE - 1) == first {
            let page = self.page(first)?;
            bytes.copy_from_slice(&page[addr - first..addr - first + 8]);
        } else {
            for (i, b) in bytes.iter_mut().enumerate() {
                let a = addr + i;
                let p = a & !(PAGE - 1);
                *b = self.page(p)?[a - p];
            }
        }
        Ok(u64::from_ne_bytes(bytes))
    }

    /// The cached copy of the page at `page_addr`, read on a miss.
    fn page(&mut self, page_addr: usize) -> Result<&[u8; PAGE], ()> {
        let slot = (page_addr / PAGE) % SLOTS;
        if self.tags[slot] != page_addr {
            self.tags[slot] = usize::MAX;
            let (pid, method) = (self.pid, &self.method);
            read_memory(pid, method, page_addr, &mut self.pages[slot])?;
            self.tags[slot] = page_addr;
            self.pages_read += 1;
        }
        Ok(&self.pages[slot])
    }
}

/// One fault-free read of this process's memory.
fn read_memory(pid: libc::pid_t, method: &Method, addr: usize, out: &mut [u8]) -> Result<(), ()> {
    match method {
        Method::VmReadv => {
            let local = libc::iovec {
                iov_base: out.as_mut_ptr().cast(),
                iov_len: out.len(),
            };
            let remote = libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: out.len(),
            };
            // SAFETY: `local` describes `out`, which is valid for writes; the
            // kernel validates `remote` and fails with EFAULT instead of faulting.
            let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
            if n == out.len() as isize {
                Ok(())
            } else {
                Err(())
            }
        }
        Method::ProcMem(fd) => {
            let offset = i64::try_from(addr).map_err(|_| ())?;
            // SAFETY: reads into `out`, valid for writes; the kernel validates the offset.
            let n =
                unsafe { libc::pread(fd.as_raw_fd(), out.as_mut_ptr().cast(), out.len(), offset) };
            if n == out.len() as isize {
                Ok(())
            } else {
                Err(())
            }
        }
    }
}

/// A fault-free read usable inside a signal handler (no cache, no allocation):
/// `process_vm_readv` only.
pub(crate) fn read_in_handler(addr: usize, out: &mut [u8]) -> bool {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    let pid = unsafe { libc::getpid() };
    read_memory(pid, &Method::VmReadv, addr, out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_memory_and_fails_cleanly_on_bad_addresses() {
        let mut r = MemReader::new().unwrap();
        let words = [1u64, 2, 3, 0xdead_beef];
        let base = words.as_ptr() as u64;
        assert_eq!(r.read_u64(base + 24), Ok(0xdead_beef));
        assert_eq!(r.read_u64(8), Err(()));
        assert_eq!(r.read_u64(u64::MAX - 3), Err(()));
        assert_eq!(r.read_u64(0xffff_8000_0000_0000), Err(()));
        // Unaligned and straddling a page boundary.
        let buf = vec![0xabu8; 3 * PAGE];
        let start = buf.as_ptr() as usize;
        let boundary = (start + PAGE) & !(PAGE - 1);
        assert_eq!(r.read_u64((boundary - 3) as u64), Ok(0xabab_abab_abab_abab));
    }
}
