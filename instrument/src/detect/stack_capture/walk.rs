//! The remote walk: DWARF CFI unwinding (framehop) of a thread that is not
//! moving, from its registers, reading its stack with [`MemReader`].
//!
//! Runs on the capturer's thread. It allocates nothing while walking
//! (`MustNotAllocateDuringUnwind`, a preallocated output), so it is safe to run
//! while the target thread is paused in our signal handler holding who knows
//! which lock (the allocator's included).

use framehop::{MustNotAllocateDuringUnwind, Unwinder};

use super::mem::MemReader;
use super::modules::{LoadedModule, Snapshot};

#[cfg(target_arch = "aarch64")]
use framehop::aarch64::{CacheAarch64 as Cache, UnwindRegsAarch64, UnwinderAarch64 as Native};
#[cfg(target_arch = "x86_64")]
use framehop::x86_64::{CacheX86_64 as Cache, UnwindRegsX86_64, UnwinderX86_64 as Native};

/// The registers a walk starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Regs {
    /// Program counter.
    pub(crate) pc: u64,
    /// Stack pointer.
    pub(crate) sp: u64,
    /// Frame pointer (`rbp` / `x29`), when known.
    pub(crate) fp: Option<u64>,
    /// Link register (aarch64 `x30`), when known.
    pub(crate) lr: Option<u64>,
}

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// The unwind tables said this is the thread's outermost frame.
    Root,
    /// The frame limit was reached: the outermost frames are missing.
    Limit,
    /// The unwinder could not go on (no unwind info, an unreadable address, a
    /// frame-pointer rule without a frame pointer): the outermost frames are missing.
    Broken,
}

/// A remote unwinder over a snapshot of the loaded objects.
pub(crate) struct Walker {
    unwinder: Native<Vec<u8>, MustNotAllocateDuringUnwind>,
    cache: Box<Cache<MustNotAllocateDuringUnwind>>,
    /// `dlpi_adds`/`dlpi_subs` of the snapshot in use.
    pub(crate) generation: (u64, u64),
    /// How many objects are known.
    pub(crate) modules: usize,
    /// Bytes of unwind tables copied.
    pub(crate) table_bytes: usize,
    /// Runtime code ranges of the loaded objects.
    #[cfg_attr(
        not(target_arch = "x86_64"),
        allow(dead_code, reason = "x86_64's recovery")
    )]
    text: Vec<std::ops::Range<u64>>,
}

impl Walker {
    /// A walker for the objects in `snap`.
    pub(crate) fn new(snap: Snapshot) -> Walker {
        let mut unwinder = Native::new();
        let mut table_bytes = 0;
        let count = snap.modules.len();
        let text = snap.modules.iter().map(|m| m.text_avma.clone()).collect();
        for m in snap.modules {
            table_bytes += m.eh_frame.as_ref().map_or(0, |e| e.1.len());
            table_bytes += m.eh_frame_hdr.as_ref().map_or(0, |e| e.1.len());
            unwinder.add_module(to_framehop(m));
        }
        Walker {
            unwinder,
            cache: Box::new(Cache::new_in()),
            generation: snap.generation,
            modules: count,
            table_bytes,
            text,
        }
    }

    /// Walks from `regs`, pushing instruction pointers into `out` (its capacity
    /// is the frame limit; it must not grow). The first is `regs.pc`, the
    /// others are return addresses. Returns how the walk ended and whether a
    /// frame pointer had to be recovered by scanning the stack (see [`Walker::recover_fp`]).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn walk(
        &mut self,
        regs: Regs,
        mem: &mut MemReader,
        out: &mut Vec<usize>,
    ) -> (WalkEnd, bool) {
        use framehop::FrameAddress;
        out.clear();
        let limit = out.capacity();
        let mut r = UnwindRegsX86_64::new(regs.pc, regs.sp, regs.fp.unwrap_or(UNKNOWN_FP));
        let mut fp_known = regs.fp.is_some();
        let mut recovered = false;
        let mut addr = FrameAddress::from_instruction_pointer(regs.pc);
        loop {
            if out.len() == limit {
                return (WalkEnd::Limit, recovered);
            }
            out.push(addr.address() as usize);
            let before = r;
            let step = {
                let mut read = |a: u64| mem.read_u64(a);
                self.unwinder
                    .unwind_frame(addr, &mut r, &mut self.cache, &mut read)
            };
            let step = match step {
                // This frame needed the frame pointer we do not have.
                Err(framehop::Error::CouldNotReadStack(a)) if !fp_known && a >= UNKNOWN_FP => {
                    match self.recover_fp(addr, before, mem) {
                        Some((regs, ra)) => {
                            r = regs;
                            recovered = true;
                            Ok(Some(ra))
                        }
                        None => return (WalkEnd::Broken, recovered),
                    }
                }
                other => other,
            };
            if !fp_known && r.bp() != UNKNOWN_FP {
                fp_known = true; // restored from where a frame had saved it
            }
            match step {
                Ok(Some(ra)) => match FrameAddress::from_return_address(ra) {
                    Some(a) => addr = a,
                    None => return (WalkEnd::Root, recovered),
                },
                Ok(None) => return (WalkEnd::Root, recovered),
                Err(_) => return (WalkEnd::Broken, recovered),
            }
        }
    }

    /// The frame at `addr` (registers `at`) keeps its frame in `rbp`, whose
    /// value we do not know (x86_64 `/proc/.../syscall` gives only `sp` and
    /// `pc`, and the callees between here and the system call did not save
    /// it). Such a frame (e.g. Rust's std, built with frame pointers) did
    /// `push %rbp; mov %rsp,%rbp` on entry, so somewhere above its stack
    /// pointer there is a 16-byte-aligned pair (caller's rbp, return address).
    /// Scans up to 64 KiB above `sp` for such a slot whose second word is a
    /// plausible return address (inside a loaded object's code, right after a
    /// `call` instruction) and unwinds the frame with it.
    ///
    /// The frame's own locals lie between `sp` and the real slot, and they can
    /// hold stale pairs that look as good: return addresses left there by calls
    /// the thread made before (an `Instant::now()` before a `thread::sleep`
    /// leaves one into `clock_gettime`). So each candidate is checked by
    /// walking on from it ([`Walker::chain_from`]): the first from which the
    /// walk reaches the thread's root, or [`LOOKAHEAD`] frames each with a
    /// plausible return address, is taken; if none does, the one that went
    /// furthest (the lowest of those).
    #[cfg(target_arch = "x86_64")]
    fn recover_fp(
        &mut self,
        addr: framehop::FrameAddress,
        at: UnwindRegsX86_64,
        mem: &mut MemReader,
    ) -> Option<(UnwindRegsX86_64, u64)> {
        let sp = at.sp();
        let mut slot = (sp + 15) & !15;
        let mut best: Option<(usize, UnwindRegsX86_64, u64)> = None;
        while slot < sp + 64 * 1024 {
            let Ok(ra) = mem.read_u64(slot + 8) else {
                break; // past the stack's mapped end
            };
            if self.is_return_address(ra, mem) {
                let mut r = at;
                r.set_bp(slot);
                let mut read = |a: u64| mem.read_u64(a);
                if let Ok(Some(got)) =
                    self.unwinder
                        .unwind_frame(addr, &mut r, &mut self.cache, &mut read)
                    && got == ra
                {
                    match self.chain_from(ra, r, mem) {
                        Chain::Sound => return Some((r, ra)),
                        Chain::BrokeAfter(n) => {
                            if best.is_none_or(|(m, ..)| n > m) {
                                best = Some((n, r, ra));
                            }
                        }
                    }
                }
            }
            slot += 16;
        }
        best.map(|(_, r, ra)| (r, ra))
    }

    /// Walks on from return address `ra` with registers `r`, without
    /// recording: [`Chain::Sound`] if it reaches the thread's root or
    /// [`LOOKAHEAD`] frames whose return addresses are all plausible.
    #[cfg(target_arch = "x86_64")]
    fn chain_from(&mut self, ra: u64, mut r: UnwindRegsX86_64, mem: &mut MemReader) -> Chain {
        let Some(mut addr) = framehop::FrameAddress::from_return_address(ra) else {
            return Chain::Sound;
        };
        for n in 0..LOOKAHEAD {
            let step = {
                let mut read = |a: u64| mem.read_u64(a);
                self.unwinder
                    .unwind_frame(addr, &mut r, &mut self.cache, &mut read)
            };
            match step {
                Ok(None) => return Chain::Sound,
                Ok(Some(next)) if self.is_return_address(next, mem) => {
                    match framehop::FrameAddress::from_return_address(next) {
                        Some(a) => addr = a,
                        None => return Chain::Sound,
                    }
                }
                Ok(Some(_)) | Err(_) => return Chain::BrokeAfter(n),
            }
        }
        Chain::Sound
    }

    /// Whether `ra` is inside a loaded object's code and follows a `call`.
    #[cfg(target_arch = "x86_64")]
    fn is_return_address(&self, ra: u64, mem: &mut MemReader) -> bool {
        if !self.text.iter().any(|t| t.contains(&ra)) || ra < 8 {
            return false;
        }
        let mut code = [0u8; 7];
        for (i, b) in code.iter_mut().enumerate() {
            match mem.read_u64(ra - 7 + i as u64) {
                Ok(w) => *b = w as u8,
                Err(()) => return false,
            }
        }
        // call rel32
        if code[2] == 0xe8 {
            return true;
        }
        // call r/m64 (ff /2), with or without a REX prefix: ends exactly at `ra`
        (2..=7).any(|k| {
            let at = 7 - k;
            code[at] == 0xff
                && (code[at + 1] >> 3) & 7 == 2
                && super::sysno::modrm_len(&code[at + 1..]).is_some_and(|len| 1 + len == k)
        })
    }

    /// Walks from `regs` (aarch64: no frame-pointer recovery; see the note).
    #[cfg(target_arch = "aarch64")]
    pub(crate) fn walk(
        &mut self,
        regs: Regs,
        mem: &mut MemReader,
        out: &mut Vec<usize>,
    ) -> (WalkEnd, bool) {
        out.clear();
        let limit = out.capacity();
        let start = UnwindRegsAarch64::new(regs.lr.unwrap_or(0), regs.sp, regs.fp.unwrap_or(0));
        let mut read = |addr: u64| mem.read_u64(addr);
        let mut frames = self
            .unwinder
            .iter_frames(regs.pc, start, &mut self.cache, &mut read);
        loop {
            match frames.next() {
                Ok(Some(frame)) => {
                    if out.len() == limit {
                        return (WalkEnd::Limit, false);
                    }
                    out.push(frame.address() as usize);
                }
                Ok(None) => return (WalkEnd::Root, false),
                Err(_) => return (WalkEnd::Broken, false),
            }
        }
    }
}

/// How many frames past a recovered frame pointer are walked to check it.
#[cfg(target_arch = "x86_64")]
const LOOKAHEAD: usize = 16;

/// What walking on from a candidate frame pointer gave ([`Walker::chain_from`]).
#[cfg(target_arch = "x86_64")]
enum Chain {
    /// The thread's root, or [`LOOKAHEAD`] plausible frames.
    Sound,
    /// The walk stopped, or met an implausible return address, after this many frames.
    BrokeAfter(usize),
}

/// Frame pointer placeholder when it is unknown: above every user address,
/// so a rule that needs it fails to read `[rbp]` and says so.
#[cfg(target_arch = "x86_64")]
const UNKNOWN_FP: u64 = 0xffff_ffff_ffff_0000;

/// framehop's description of one object.
fn to_framehop(m: LoadedModule) -> framehop::Module<Vec<u8>> {
    let svma = |avma: u64, len: usize| avma - m.bias..avma - m.bias + len as u64;
    let (eh_frame_hdr_svma, eh_frame_hdr) = match m.eh_frame_hdr {
        Some((a, bytes)) => (Some(svma(a, bytes.len())), Some(bytes)),
        None => (None, None),
    };
    let (eh_frame_svma, eh_frame) = match m.eh_frame {
        Some((a, bytes)) => (Some(svma(a, bytes.len())), Some(bytes)),
        None => (None, None),
    };
    let info = framehop::ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(m.text_avma.start - m.bias..m.text_avma.end - m.bias),
        eh_frame_hdr_svma,
        eh_frame_hdr,
        eh_frame_svma,
        eh_frame,
        ..Default::default()
    };
    framehop::Module::new(m.name, m.avma.clone(), m.bias, info)
}
