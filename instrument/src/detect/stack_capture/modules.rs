//! The loaded objects (executable, shared libraries, vDSO) and their unwind
//! tables, for the remote unwinder.
//!
//! For each object `dl_iterate_phdr` reports, the `.eh_frame_hdr` (found through
//! the `PT_GNU_EH_FRAME` program header) and the `.eh_frame` it points to are
//! *copied* out of the mapped image while the loader's lock is held, so a later
//! `dlclose` can never leave the unwinder reading unmapped memory. Nothing is
//! read from files: stripped binaries and deleted files work the same.
//!
//! glibc counts loads and unloads (`dlpi_adds`, `dlpi_subs`); the table is
//! rebuilt only when those change, before a capture starts (never while a
//! target thread is paused).

use std::ffi::{CStr, c_int, c_void};

/// One loaded object's unwind data.
pub(crate) struct LoadedModule {
    /// Its name as the loader reports it (empty for the executable).
    pub(crate) name: String,
    /// Load bias: runtime address minus the address in the file.
    pub(crate) bias: u64,
    /// Runtime addresses of all its `PT_LOAD` segments, lowest to highest end.
    pub(crate) avma: std::ops::Range<u64>,
    /// Runtime address range of its executable segments.
    pub(crate) text_avma: std::ops::Range<u64>,
    /// Runtime address of the copied `.eh_frame_hdr`, and its bytes.
    pub(crate) eh_frame_hdr: Option<(u64, Vec<u8>)>,
    /// Runtime address of the copied `.eh_frame`, and its bytes.
    pub(crate) eh_frame: Option<(u64, Vec<u8>)>,
}

/// What `dl_iterate_phdr` said, with the load/unload counters.
pub(crate) struct Snapshot {
    /// The objects, in the loader's order (executable first).
    pub(crate) modules: Vec<LoadedModule>,
    /// `dlpi_adds` and `dlpi_subs` when they were read.
    pub(crate) generation: (u64, u64),
}

/// The loader's load and unload counters (cheap: one `dl_iterate_phdr` that stops at once).
pub(crate) fn generation() -> (u64, u64) {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the tuple below; `info` is valid during the callback.
        unsafe {
            let out = &mut *data.cast::<(u64, u64)>();
            *out = ((*info).dlpi_adds, (*info).dlpi_subs);
        }
        1
    }
    let mut out = (0u64, 0u64);
    // SAFETY: the callback only writes `out`.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut out).cast()) };
    out
}

/// Reads every loaded object's unwind tables.
pub(crate) fn snapshot() -> Snapshot {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the Snapshot below; `info` and what it points to
        // (program headers, and the mapped image itself) stay valid and mapped
        // for the duration of the callback, which holds the loader's lock.
        unsafe {
            let snap = &mut *data.cast::<Snapshot>();
            let info = &*info;
            snap.generation = (info.dlpi_adds, info.dlpi_subs);
            if let Some(m) = read_module(info) {
                snap.modules.push(m);
            }
        }
        0
    }
    let mut snap = Snapshot {
        modules: Vec::new(),
        generation: (0, 0),
    };
    // SAFETY: the callback reads the loader's structures and copies from them.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut snap).cast()) };
    snap
}

/// Copies the unwind tables of one object.
///
/// # Safety
/// `info` must come from `dl_iterate_phdr`, called from its callback.
unsafe fn read_module(info: &libc::dl_phdr_info) -> Option<LoadedModule> {
    let bias = info.dlpi_addr;
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader gives `dlpi_phnum` headers at `dlpi_phdr`.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let loads: Vec<&libc::Elf64_Phdr> = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD)
        .collect();
    let lo = loads.iter().map(|h| h.p_vaddr).min()?;
    let hi = loads.iter().map(|h| h.p_vaddr + h.p_memsz).max()?;
    let text_lo = loads
        .iter()
        .filter(|h| h.p_flags & libc::PF_X != 0)
        .map(|h| h.p_vaddr)
        .min()
        .unwrap_or(lo);
    let text_hi = loads
        .iter()
        .filter(|h| h.p_flags & libc::PF_X != 0)
        .map(|h| h.p_vaddr + h.p_memsz)
        .max()
        .unwrap_or(hi);
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let mut module = LoadedModule {
        name,
        bias,
        avma: bias + lo..bias + hi,
        text_avma: bias + text_lo..bias + text_hi,
        eh_frame_hdr: None,
        eh_frame: None,
    };
    let Some(hdr_ph) = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME) else {
        return Some(module);
    };
    let hdr_addr = bias + hdr_ph.p_vaddr;
    let hdr_len = hdr_ph.p_memsz as usize;
    if hdr_len < 8 {
        return Some(module);
    }
    // SAFETY: PT_GNU_EH_FRAME describes mapped, readable bytes of this object.
    let hdr = unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr_len) };
    // version 1, eh_frame_ptr encoding; only the usual encodings are handled.
    if hdr[0] != 1 {
        return Some(module);
    }
    let eh_frame_addr = match hdr[1] {
        0x1b => {
            (hdr_addr as i64 + 4 + i64::from(i32::from_ne_bytes(hdr[4..8].try_into().ok()?))) as u64
        } // pcrel|sdata4
        0x03 => u64::from(u32::from_ne_bytes(hdr[4..8].try_into().ok()?)), // udata4 absolute
        _ => return Some(module),
    };
    // The .eh_frame ends with a zero-length terminator or at the end of its segment.
    let seg_end = loads
        .iter()
        .map(|h| (bias + h.p_vaddr, bias + h.p_vaddr + h.p_filesz))
        .find(|&(s, e)| (s..e).contains(&eh_frame_addr))
        .map(|(_, e)| e)?;
    let mut p = eh_frame_addr;
    while p + 4 <= seg_end {
        // SAFETY: inside the mapped segment, checked above.
        let len = u64::from(unsafe { (p as *const u32).read_unaligned() });
        if len == 0 {
            p += 4;
            break;
        }
        let (header, len) = if len == 0xffff_ffff {
            if p + 12 > seg_end {
                break;
            }
            // SAFETY: as above.
            (12, unsafe { ((p + 4) as *const u64).read_unaligned() })
        } else {
            (4, len)
        };
        match p.checked_add(header + len) {
            Some(next) if next <= seg_end => p = next,
            _ => break,
        }
    }
    let eh_len = (p.min(seg_end) - eh_frame_addr) as usize;
    // SAFETY: [eh_frame_addr, eh_frame_addr + eh_len) lies in the mapped segment.
    let eh = unsafe { std::slice::from_raw_parts(eh_frame_addr as *const u8, eh_len) };
    module.eh_frame_hdr = Some((hdr_addr, hdr.to_vec()));
    module.eh_frame = Some((eh_frame_addr, eh.to_vec()));
    Some(module)
}

/// Address ranges of code that belongs to an unwinder (libgcc's `_Unwind_*`,
/// its static `uw_*` helpers between them, LLVM libunwind's `unw_*`), and of
/// `dl_iterate_phdr`, which unwinders call to find tables. A thread interrupted
/// there is not captured.
pub(crate) fn unwinder_ranges() -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    // Exported entry points of libgcc_s's unwinder; its static helpers (uw_*,
    // execute_cfa_program, search_object, ...) lie between the lowest and the
    // highest of them in every libgcc build we looked at.
    let names: [&CStr; 12] = [
        c"_Unwind_GetGR",
        c"_Unwind_GetCFA",
        c"_Unwind_RaiseException",
        c"_Unwind_ForcedUnwind",
        c"_Unwind_Resume",
        c"_Unwind_Backtrace",
        c"_Unwind_Find_FDE",
        c"__register_frame_info_bases",
        c"__deregister_frame_info_bases",
        c"__gcc_personality_v0",
        c"unw_step",
        c"unw_init_local",
    ];
    let mut lo = usize::MAX;
    let mut hi = 0usize;
    for name in names {
        if let Some((addr, size)) = symbol(name) {
            lo = lo.min(addr);
            hi = hi.max(addr + size.max(1));
        }
    }
    if lo < hi && hi - lo < 1 << 20 {
        ranges.push((lo, hi));
    }
    if let Some((addr, size)) = symbol(c"dl_iterate_phdr") {
        ranges.push((addr, addr + size.max(1)));
    }
    ranges
}

/// Address and size of the function `name`, from the dynamic symbol table.
pub(crate) fn symbol(name: &CStr) -> Option<(usize, usize)> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if addr.is_null() {
        return None;
    }
    // SAFETY: zeroed Dl_info is a valid out-parameter; `sym` receives a pointer
    // into the loader's symbol table, valid while the object is loaded.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let mut sym: *const libc::Elf64_Sym = std::ptr::null();
        const RTLD_DL_SYMENT: c_int = 1;
        if libc::dladdr1(addr, &mut info, (&raw mut sym).cast(), RTLD_DL_SYMENT) == 0
            || sym.is_null()
        {
            return Some((addr as usize, 1));
        }
        Some((addr as usize, (*sym).st_size as usize))
    }
}
