//! Panics inside polls: a panic hook (chained to the one already installed)
//! notes the message and location on the record of the task being polled, so
//! the task's end is reported as `panicked`, with where and why.

use std::panic::PanicHookInfo;
use std::sync::Once;

use crate::capture::poll;
use crate::model::task::PanicRecord;

static INSTALL: Once = Once::new();

pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            note(info);
            previous(info);
        }));
    });
}

fn note(info: &PanicHookInfo<'_>) {
    let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    };
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    poll::with_current(|_, cell| cell.set_panic(PanicRecord { message, location }));
}
