//! Panics inside polls: a panic hook (chained to the one already installed)
//! notes the message and location on the record of the task being polled, so
//! the task's end is reported as `panicked`, with where and why. While the
//! previous hook runs, the thread is marked as unwinding, so the stack
//! capture never signals it there.

use std::panic::PanicHookInfo;
use std::sync::Once;

use taskscope_api::format::{MAX_TEXT, truncate};

use crate::capture::poll;
use crate::detect::stack_capture::UnwindGuard;
use crate::model::task::PanicRecord;

static INSTALL: Once = Once::new();

pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            note(info);
            // The app's hook may take and print a backtrace (the default one
            // does with RUST_BACKTRACE=1): the watchdog must not capture this
            // thread by signal meanwhile (std already counts it as panicking;
            // the guard also covers hooks that outlive the panic count).
            let _unwinding = UnwindGuard::new();
            previous(info);
        }));
    });
}

/// The panic's message, at most [`MAX_TEXT`] bytes of it (marked when cut):
/// a 5 MB message would otherwise be held, written to the report and sent to
/// every viewer whole.
fn note(info: &PanicHookInfo<'_>) {
    let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
        truncate(s, MAX_TEXT).into_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        truncate(s, MAX_TEXT).into_owned()
    } else {
        "Box<dyn Any>".to_string()
    };
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    poll::with_current(|_, cell| cell.set_panic(PanicRecord { message, location }));
}
