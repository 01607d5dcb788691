//! Symbolization: the instruction pointers of a captured stack
//! ([`RawStack`]) turned into frames with function names, files and lines, on
//! the watchdog's thread (never on the blocked one).
//!
//! `backtrace::resolve` (gimli over the binary's DWARF) gives demangled names
//! without the hash, file and line where the debug info has them, inlined
//! frames expanded. Debug info at `line-tables-only` (this workspace's release
//! profile) names functions without their path and with their generic
//! arguments (`poll_future<…hundreds of characters…>`), so the name of the
//! function an address is in is taken from the ELF symbol table (`.symtab`,
//! read with `object` through a private mapping of the file), and the generic
//! arguments of the remaining short names (inlined calls) are dropped. With
//! `debug = "limited"` or more every frame has its full path.
//!
//! Cost (2-core dev machine): the first call in a process reads and caches
//! the debug info and the symbol table, about 100 ms for a release test
//! binary, 0.7 s for a debug one (and memory for the cache, kept); later ones
//! take 0.15 ms (release) to 0.9 ms (debug) for a 60-frame Tokio stack.

use std::ffi::c_void;

use taskscope_api::StackFrame;

use crate::detect::stack_capture::RawStack;

/// How many frames [`symbolize`] returns at most.
pub(crate) const MAX_SYMBOLIZED: usize = 64;

/// Turns a [`RawStack`] into frames, innermost first, at most [`MAX_SYMBOLIZED`].
///
/// Function names are demangled without the hash; file and line are set where
/// the debug info has them (unknown functions are named by address, `0x…`);
/// inlined calls are expanded into frames of their own. The stack holds no
/// capture machinery (the capture walks it from another thread); removed:
/// taskscope's own frames (functions whose name starts with `taskscope::` or
/// `<taskscope::`), except those of test modules (`::tests::`), which stand for
/// application code. Frames outside the task (Tokio's worker loop, the thread's
/// start) are kept as context.
pub(crate) fn symbolize(raw: &RawStack) -> Vec<StackFrame> {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        if symtab::file_has_debug_info(std::path::Path::new("/proc/self/exe")) == Some(false) {
            eprintln!("taskscope: {NO_DEBUG_INFO}");
        }
    });
    let mut frames = Vec::new();
    for (i, &ip) in raw.ips().iter().enumerate() {
        // `resolve` looks up `addr - 1`, right for return addresses and for
        // the address after a `syscall` instruction (a thread blocked in a
        // system call); an interrupted program counter is exact, so ask for
        // one past it.
        let addr = if i == 0 && raw.exact_top() {
            ip.wrapping_add(1)
        } else {
            ip
        };
        let before = frames.len();
        backtrace::resolve(addr as *mut c_void, |symbol| {
            frames.push(StackFrame {
                function: symbol
                    .name()
                    .map(|name| format!("{name:#}"))
                    .unwrap_or_else(|| format!("{ip:#x}")),
                file: symbol.filename().map(|p| p.display().to_string()),
                line: symbol.lineno(),
            });
        });
        match frames.get_mut(before..) {
            Some([inlined @ .., outermost]) => {
                // Debug info at `line-tables-only` names functions without their
                // path and with their generic arguments (`poll`, `{closure#0}`,
                // `call_once<…>`, often hundreds of characters). The symbol table
                // has the full name of the function the address is in; inlined
                // calls keep the short name, without the generic arguments.
                if is_short_name(&outermost.function)
                    && let Some(full) = symtab::function_name(addr.wrapping_sub(1))
                {
                    outermost.function = full;
                }
                for frame in inlined.iter_mut().chain([outermost]) {
                    if is_short_name(&frame.function)
                        && let Some(cut) = frame.function.find('<').filter(|&i| i > 0)
                    {
                        frame.function.truncate(cut);
                    }
                }
            }
            Some([]) | None => frames.push(StackFrame {
                function: symtab::function_name(addr.wrapping_sub(1))
                    .unwrap_or_else(|| format!("{ip:#x}")),
                file: None,
                line: None,
            }),
        }
    }
    frames.retain(|f| !is_own_frame(&f.function));
    frames.truncate(MAX_SYMBOLIZED);
    frames
}

/// Said once on stderr, at the first stack, when the program has no debug info.
pub(crate) const NO_DEBUG_INFO: &str = "this program has no debug info (Cargo strips it from \
     release builds unless `debug` is set): the stacks of slow polls name functions without files \
     or lines, and miss the functions inlined into others, the app's async fns among them; \
     `debug = \"line-tables-only\"` in `[profile.release]` gives files and lines, \
     `debug = \"limited\"` the full names too";

/// A function name without its path, as `line-tables-only` debug info gives them
/// (`spinning_marker`, `{closure#0}`, `call_once<F, ()>`; also C names). Task
/// dumps use it too, to say when their frames are named so.
pub(crate) fn is_short_name(function: &str) -> bool {
    !function.starts_with('<') && !function.split('<').next().unwrap_or("").contains("::")
}

/// Full function names from the ELF symbol tables (`.symtab`, else `.dynsym`)
/// of the loaded objects, read on first use and kept.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod symtab {
    use std::ffi::{CStr, c_int, c_void};
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, PoisonError};

    use object::{Object, ObjectSymbol, SymbolKind};

    /// One loaded object (the executable, a shared library).
    struct Module {
        /// Its file; `None` when it has none (the vDSO) or it cannot be read.
        path: Option<PathBuf>,
        /// Load bias: runtime address minus file address.
        bias: usize,
        /// Runtime address ranges of its `PT_LOAD` segments.
        ranges: Vec<(usize, usize)>,
        /// Function symbols sorted by file address, loaded on first lookup.
        symbols: Option<Vec<Symbol>>,
    }

    /// One function symbol.
    struct Symbol {
        /// File (link-time) address of the function.
        addr: u64,
        /// Its size in bytes (0 when the table does not say).
        size: u64,
        /// Its mangled name.
        name: Box<str>,
    }

    /// The loaded objects seen so far, with their symbols once read.
    static MODULES: Mutex<Vec<Module>> = Mutex::new(Vec::new());

    /// The demangled (hash-less) name of the function containing `addr`, when
    /// the symbol table has it and it is a Rust path.
    pub(super) fn function_name(addr: usize) -> Option<String> {
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        let contains = |m: &Module| m.ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&addr));
        if !modules.iter().any(contains) {
            *modules = loaded_modules(); // a library loaded since: scan again
        }
        let module = modules.iter_mut().find(|m| contains(m))?;
        let bias = module.bias;
        let symbols = module
            .symbols
            .get_or_insert_with(|| module.path.as_ref().map(read_symbols).unwrap_or_default());
        let file_addr = addr.wrapping_sub(bias) as u64;
        let i = symbols
            .partition_point(|s| s.addr <= file_addr)
            .checked_sub(1)?;
        let symbol = symbols.get(i)?;
        if file_addr - symbol.addr >= symbol.size.max(1) {
            return None;
        }
        let name = match rustc_demangle::try_demangle(&symbol.name) {
            Ok(demangled) => format!("{demangled:#}"),
            Err(_) => return None,
        };
        name.contains("::").then_some(name)
    }

    /// The objects loaded now, from `dl_iterate_phdr`.
    fn loaded_modules() -> Vec<Module> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: `data` is the `Vec` passed below; `info` and its program
            // headers are valid for the duration of the callback.
            unsafe {
                let modules = &mut *data.cast::<Vec<Module>>();
                let info = &*info;
                let name = if info.dlpi_name.is_null() {
                    &[][..]
                } else {
                    CStr::from_ptr(info.dlpi_name).to_bytes()
                };
                let path = if name.is_empty() && modules.is_empty() {
                    Some(PathBuf::from("/proc/self/exe")) // the executable comes first
                } else if name.starts_with(b"/") {
                    Some(PathBuf::from(String::from_utf8_lossy(name).into_owned()))
                } else {
                    None // the vDSO, or a name that is not a path
                };
                let bias = info.dlpi_addr as usize;
                let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
                };
                let ranges = headers
                    .iter()
                    .filter(|h| h.p_type == libc::PT_LOAD)
                    .map(|h| {
                        let lo = bias.wrapping_add(h.p_vaddr as usize);
                        (lo, lo.wrapping_add(h.p_memsz as usize))
                    })
                    .collect();
                modules.push(Module {
                    path,
                    bias,
                    ranges,
                    symbols: None,
                });
            }
            0
        }
        let mut modules: Vec<Module> = Vec::new();
        // SAFETY: the callback only reads `info` and pushes to `modules`.
        unsafe {
            libc::dl_iterate_phdr(Some(each), (&raw mut modules).cast());
        }
        modules
    }

    /// Whether the ELF file at `path` has debug info of its own (`.debug_line`) or
    /// names a separate file that may (`.gnu_debuglink`); `None` when it cannot be read.
    pub(in crate::detect) fn file_has_debug_info(path: &Path) -> Option<bool> {
        let file = std::fs::File::open(path).ok()?;
        let map = Mapping::new(&file)?;
        let elf = object::File::parse(map.bytes()).ok()?;
        Some(
            [".debug_line", ".zdebug_line", ".gnu_debuglink"]
                .iter()
                .any(|name| elf.section_by_name(name).is_some()),
        )
    }

    /// The function symbols of the ELF file at `path`, sorted by address (empty on error).
    fn read_symbols(path: &PathBuf) -> Vec<Symbol> {
        let Ok(file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let Some(map) = Mapping::new(&file) else {
            return Vec::new();
        };
        let Ok(elf) = object::File::parse(map.bytes()) else {
            return Vec::new();
        };
        let mut symbols: Vec<Symbol> = elf
            .symbols()
            .chain(elf.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                Some(Symbol {
                    addr: s.address(),
                    size: s.size(),
                    name: s.name().ok()?.into(),
                })
            })
            .collect();
        symbols.sort_by_key(|s| (s.addr, std::cmp::Reverse(s.size)));
        symbols.dedup_by_key(|s| s.addr);
        symbols
    }

    /// A read-only private mapping of a whole file.
    struct Mapping {
        /// Start of the mapping.
        ptr: *mut c_void,
        /// Its length: the file's size.
        len: usize,
    }

    impl Mapping {
        /// Maps all of `file`; `None` if it is empty or cannot be mapped.
        fn new(file: &std::fs::File) -> Option<Mapping> {
            use std::os::fd::AsRawFd;
            let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
            if len == 0 {
                return None;
            }
            // SAFETY: maps `len` bytes of an open file read-only; unmapped in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
        }

        /// The mapped bytes.
        fn bytes(&self) -> &[u8] {
            // SAFETY: a live mapping of `len` readable bytes.
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: unmaps what `new` mapped.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

/// No symbol tables to read on other platforms.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod symtab {
    /// Always `None` here.
    pub(super) fn function_name(_addr: usize) -> Option<String> {
        None
    }

    /// Not known here.
    pub(super) fn file_has_debug_info(_path: &std::path::Path) -> Option<bool> {
        None
    }
}

/// A function of taskscope itself (test modules excepted: they stand for the application).
fn is_own_frame(function: &str) -> bool {
    (function.starts_with("taskscope::") || function.starts_with("<taskscope::"))
        && !function.contains("::tests::")
}

/// A frame of a capture machinery (signal handler, unwinder, trampoline):
/// the tests check that no captured stack holds one.
#[cfg(test)]
pub(crate) fn is_capture_machinery(function: &str) -> bool {
    (function.starts_with("taskscope::detect::stack_capture::") && !function.contains("::tests::"))
        || function.starts_with("backtrace::")
        || function.starts_with("<backtrace::")
        || function.starts_with("_Unwind_")
        || function.starts_with("uw_")
        || function.starts_with("unw_")
        || function.starts_with("libunwind::")
        || function == "__restore_rt"
        || function == "__kernel_rt_sigreturn"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which frames count as taskscope's own.
    #[test]
    fn own_frames_are_recognized() {
        assert!(is_own_frame("taskscope::capture::poll::begin"));
        assert!(is_own_frame(
            "<taskscope::Tracked<F> as core::future::Future>::poll"
        ));
        assert!(!is_own_frame("taskscope::detect::tests::spinning_marker"));
        assert!(!is_own_frame("tokio::runtime::task::harness::poll"));
    }

    /// A program with debug info says so; the same stripped of it (`objcopy
    /// --strip-debug`, what Cargo's release profile does) does not.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn a_program_without_debug_info_is_told_apart() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(symtab::file_has_debug_info(&exe), Some(true));
        let stripped =
            std::env::temp_dir().join(format!("taskscope-stripped-{}", std::process::id()));
        let status = std::process::Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&exe)
            .arg(&stripped)
            .status()
            .expect("objcopy (binutils) is needed for this test: apt-get install binutils");
        assert!(status.success(), "objcopy --strip-debug failed");
        let got = symtab::file_has_debug_info(&stripped);
        std::fs::remove_file(&stripped).unwrap();
        assert_eq!(got, Some(false));
        assert_eq!(
            symtab::file_has_debug_info(std::path::Path::new("/nonexistent")),
            None
        );
    }

    /// Which frames are the capture's own machinery.
    #[test]
    fn capture_machinery_is_recognized() {
        assert!(is_capture_machinery(
            "taskscope::detect::stack_capture::imp::handler"
        ));
        assert!(is_capture_machinery("_Unwind_Backtrace"));
        assert!(is_capture_machinery("__restore_rt"));
        assert!(!is_capture_machinery(
            "taskscope::detect::tests::spinning_marker"
        ));
        assert!(!is_capture_machinery("app::load_config"));
    }
}
