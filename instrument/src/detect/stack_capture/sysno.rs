//! Which system call an interrupted `syscall` instruction was making (x86_64).
//!
//! When a signal with a handler interrupts a system call that Linux never
//! restarts (poll, epoll_wait, nanosleep, socket calls with a timeout, ...),
//! the kernel stores `-EINTR` in `rax`, where the number was. To restart the
//! call from the handler we need the number back. glibc 2.36 wrappers load it
//! with `mov $nr,%eax` (`b8 imm32`), or `xor %eax,%eax` for `read` (0),
//! immediately before `syscall` or a few argument moves earlier (measured over
//! all 526 `syscall` instructions of Debian's libc.so.6: see the note). The
//! generic `syscall(3)` function moves the number from `%rdi` to `%rax` and
//! loses it; there the *caller's* `mov $nr,%edi` before its `call` is found instead.
//!
//! The search is conservative: a candidate `mov`/`xor` is accepted only if a
//! straight-line decode of a small set of instructions that do not write the
//! register (register and memory moves, `lea`, ALU on other registers,
//! compares, `nop`) lands exactly on the `syscall` (or `call`). Anything else
//! (a branch, a call, an instruction outside the set) rejects it: the number
//! is then unknown, and the caller must not guess.

/// x86_64 system calls that may return `EINTR` after a handler ran and that
/// can be re-issued with the same arguments with the same effect as the
/// kernel's own restart (no data was transferred when they returned `EINTR`).
/// `connect` is not here: re-issuing it reports `EALREADY`.
pub(crate) const RESTARTABLE_X86_64: &[u32] = &[
    0,   // read
    1,   // write
    7,   // poll
    17,  // pread64
    18,  // pwrite64
    19,  // readv
    20,  // writev
    23,  // select
    34,  // pause
    35,  // nanosleep
    43,  // accept
    44,  // sendto
    45,  // recvfrom
    46,  // sendmsg
    47,  // recvmsg
    61,  // wait4
    128, // rt_sigtimedwait
    130, // rt_sigsuspend
    202, // futex
    230, // clock_nanosleep
    232, // epoll_wait
    247, // waitid
    270, // pselect6
    271, // ppoll
    281, // epoll_pwait
    288, // accept4
    295, // preadv
    296, // pwritev
    299, // recvmmsg
    307, // sendmmsg
    441, // epoll_pwait2
];

/// Whether `nr` is in [`RESTARTABLE_X86_64`].
pub(crate) fn restartable(nr: u32) -> bool {
    RESTARTABLE_X86_64.contains(&nr)
}

/// Register numbers as x86 encodes them.
pub(crate) const EAX: u8 = 0;
/// `%edi`, the first argument of a C call.
pub(crate) const EDI: u8 = 7;

/// The constant that the code just before the end of `code` puts in register
/// `target` (0-7), when it can be proven by the conservative decode described
/// in the module docs. `code` ends where the `syscall` (or `call`) starts.
pub(crate) fn constant_in_register(code: &[u8], target: u8) -> Option<u32> {
    for start in (0..code.len()).rev() {
        let Some((len, value)) = set_constant(&code[start..], target) else {
            continue;
        };
        if straight_line_to_end(&code[start + len..], target) {
            return Some(value);
        }
    }
    None
}

/// An instruction at the start of `code` that sets `target` to a constant: its length and the constant.
fn set_constant(code: &[u8], target: u8) -> Option<(usize, u32)> {
    let imm32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?))
    };
    let (rex, op_at) = match code.first()? {
        b @ 0x40..=0x4f => (*b, 1),
        _ => (0, 0),
    };
    if rex & 0b0101 != 0 {
        return None; // REX.R / REX.B: r8-r15, not our register
    }
    let op = *code.get(op_at)?;
    match op {
        // mov $imm32, %r32 (with REX.W this is a 64-bit immediate: not used for numbers)
        0xb8..=0xbf if op - 0xb8 == target && rex & 8 == 0 => Some((op_at + 5, imm32(op_at + 1)?)),
        // xor %r,%r / sub %r,%r (both forms)
        0x31 | 0x33 | 0x29 | 0x2b => {
            let modrm = *code.get(op_at + 1)?;
            (modrm >> 6 == 3 && (modrm >> 3) & 7 == target && modrm & 7 == target)
                .then_some((op_at + 2, 0))
        }
        // mov $imm32, r/m (c7 /0, register form); sign-extended with REX.W
        0xc7 => {
            let modrm = *code.get(op_at + 1)?;
            (modrm >> 6 == 3 && (modrm >> 3) & 7 == 0 && modrm & 7 == target)
                .then_some((op_at + 6, imm32(op_at + 2)?))
        }
        _ => None,
    }
}

/// Whether `code` decodes, instruction by instruction, as straight-line code
/// of the accepted set that never writes `target`, ending exactly at its end.
fn straight_line_to_end(code: &[u8], target: u8) -> bool {
    let mut at = 0;
    while at < code.len() {
        match decode_one(&code[at..]) {
            Some(insn) if insn.writes != Some(target) && !insn.writes_any_low => at += insn.len,
            _ => return false,
        }
    }
    at == code.len()
}

/// One decoded instruction of the accepted set.
struct Insn {
    /// Its length in bytes.
    len: usize,
    /// The general register (0-15) it writes, if any.
    writes: Option<u8>,
    /// It writes a register we cannot name precisely (e.g. `%ah`): treated as writing everything.
    writes_any_low: bool,
}

/// Length of a ModRM operand (the ModRM byte, SIB and displacement) starting at `code[0]`.
pub(crate) fn modrm_len(code: &[u8]) -> Option<usize> {
    let modrm = *code.first()?;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return Some(1);
    }
    let mut len = 1;
    let mut base = rm;
    if rm == 4 {
        base = *code.get(1)? & 7;
        len += 1;
    }
    len += match md {
        0 if rm == 5 || (rm == 4 && base == 5) => 4,
        0 => 0,
        1 => 1,
        _ => 4,
    };
    (code.len() >= len).then_some(len)
}

/// Decodes one instruction of the accepted set at the start of `code`.
fn decode_one(code: &[u8]) -> Option<Insn> {
    let (rex, at) = match code.first()? {
        b @ 0x40..=0x4f => (*b, 1),
        _ => (0, 0),
    };
    let r_ext = (rex & 4) << 1; // REX.R -> +8
    let b_ext = (rex & 1) << 3; // REX.B -> +8
    let op = *code.get(at)?;
    let modrm = code.get(at + 1).copied();
    let reg = |m: u8| ((m >> 3) & 7) | r_ext;
    let rm_reg = |m: u8| (m >> 6 == 3).then_some((m & 7) | b_ext);
    let plain = |len: usize, writes: Option<u8>| {
        Some(Insn {
            len,
            writes,
            writes_any_low: false,
        })
    };
    match op {
        // mov r/m, r ; ALU r/m, r (add, or, and, sub, xor): destination is r/m
        0x89 | 0x01 | 0x09 | 0x21 | 0x29 | 0x31 => {
            let m = modrm?;
            plain(at + 1 + modrm_len(&code[at + 1..])?, rm_reg(m))
        }
        // mov r, r/m ; ALU r, r/m ; lea ; movsxd: destination is reg
        0x8b | 0x03 | 0x0b | 0x23 | 0x2b | 0x33 | 0x8d | 0x63 => {
            let m = modrm?;
            plain(at + 1 + modrm_len(&code[at + 1..])?, Some(reg(m)))
        }
        // test, cmp: no register written
        0x85 | 0x39 | 0x3b => plain(at + 1 + modrm_len(&code[at + 1..])?, None),
        // mov $imm32, r/m
        0xc7 => {
            let m = modrm?;
            if (m >> 3) & 7 != 0 {
                return None;
            }
            plain(at + 1 + modrm_len(&code[at + 1..])? + 4, rm_reg(m))
        }
        // ALU r/m, imm32 / imm8 (/7 = cmp writes nothing)
        0x81 | 0x83 => {
            let m = modrm?;
            let imm = if op == 0x81 { 4 } else { 1 };
            let writes = if (m >> 3) & 7 == 7 { None } else { rm_reg(m) };
            plain(at + 1 + modrm_len(&code[at + 1..])? + imm, writes)
        }
        // 8-bit ALU r/m8, imm8: with a REX prefix registers 4-7 are spl..dil,
        // without one they are ah..bh (part of rax..rbx).
        0x80 => {
            let m = modrm?;
            let len = at + 1 + modrm_len(&code[at + 1..])? + 1;
            let writes = if (m >> 3) & 7 == 7 { None } else { rm_reg(m) };
            match writes {
                Some(r) if rex == 0 && (4..8).contains(&r) => Some(Insn {
                    len,
                    writes: Some(r - 4),
                    writes_any_low: false,
                }),
                w => plain(len, w),
            }
        }
        // mov $imm8, %r8 (`mov $0,%al` before variadic calls); without REX, 4-7 are ah..bh
        0xb0..=0xb7 => {
            let r = (op - 0xb0) | b_ext;
            let r = if rex == 0 && (4..8).contains(&r) {
                r - 4
            } else {
                r
            };
            plain(at + 2, Some(r))
        }
        // mov $imm, %r32 (imm64 with REX.W)
        0xb8..=0xbf => plain(
            at + 1 + if rex & 8 != 0 { 8 } else { 4 },
            Some((op - 0xb8) | b_ext),
        ),
        // shifts by imm8 / by 1
        0xc1 => plain(at + 1 + modrm_len(&code[at + 1..])? + 1, rm_reg(modrm?)),
        0xd1 => plain(at + 1 + modrm_len(&code[at + 1..])?, rm_reg(modrm?)),
        // push reg (writes only rsp), pop reg
        0x50..=0x57 => plain(at + 1, None),
        0x58..=0x5f => plain(at + 1, Some((op - 0x58) | b_ext)),
        0x90 => plain(at + 1, None),
        0x0f => {
            let op2 = *code.get(at + 1)?;
            let m = *code.get(at + 2)?;
            let len = at + 2 + modrm_len(&code[at + 2..])?;
            match op2 {
                0x1f => plain(len, None),                                            // nopl
                0x40..=0x4f | 0xb6 | 0xb7 | 0xbe | 0xbf => plain(len, Some(reg(m))), // cmov, movzx, movsx
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_wrapper_shapes() {
        // __poll (single-threaded path): mov $0x7,%eax
        assert_eq!(
            constant_in_register(&[0x74, 0x17, 0xb8, 7, 0, 0, 0], EAX),
            Some(7)
        );
        // recvfrom (cancellable path): mov $0x2d,%eax; mov 0x10(%rsp),%rdx; mov 0x8(%rsp),%rsi
        let code = [
            0x8b, 0x3c, 0x24, 0xb8, 0x2d, 0, 0, 0, 0x48, 0x8b, 0x54, 0x24, 0x10, 0x48, 0x8b, 0x74,
            0x24, 0x08,
        ];
        assert_eq!(constant_in_register(&code, EAX), Some(45));
        // read: xor %eax,%eax
        assert_eq!(constant_in_register(&[0x31, 0xc0], EAX), Some(0));
        // syscall(3): mov %rdi,%rax ... mov 0x8(%rsp),%r9: the number is not a constant here
        let code = [
            0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0x48, 0x89, 0xca, 0x4d, 0x89,
            0xc2, 0x4d, 0x89, 0xc8, 0x4c, 0x8b, 0x4c, 0x24, 0x08,
        ];
        assert_eq!(constant_in_register(&code, EAX), None);
        // a write to eax after the constant: rejected
        assert_eq!(
            constant_in_register(&[0xb8, 7, 0, 0, 0, 0x89, 0xd0], EAX),
            None
        );
        // a call in between: rejected
        assert_eq!(
            constant_in_register(&[0xb8, 7, 0, 0, 0, 0xe8, 0, 0, 0, 0], EAX),
            None
        );
        // caller of syscall(3): mov $0xca,%edi; mov %rbx,%rsi
        assert_eq!(
            constant_in_register(&[0xbf, 0xca, 0, 0, 0, 0x48, 0x89, 0xde], EDI),
            Some(202)
        );
        // mov $imm,%rax (48 c7 c0)
        assert_eq!(
            constant_in_register(&[0x48, 0xc7, 0xc0, 0xe8, 0, 0, 0], EAX),
            Some(232)
        );
    }
}
