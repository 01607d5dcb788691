//! Which capture this process uses: one per process.
//!
//! The tracing captures ([`crate::init`]'s subscriber, [`crate::Builder::layer`])
//! key tasks by span id, the hooks ([`crate::Builder::install_on`],
//! `#[taskscope::main]`) by task id, in the same table: mixed, or two
//! tracing captures on two subscribers (two span id spaces), a key of one
//! could name a live task of the other, and a span's close recycle a record
//! that is being polled. So the first capture installed wins and any other
//! kind is refused ([`Error::CaptureConflict`]). Several runtimes with the
//! hooks are fine: task ids are unique in the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::Error;
use crate::sync::lock;

/// A way of capturing tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// [`crate::init`] / [`crate::try_init`]: taskscope's global subscriber.
    #[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
    Init,
    /// [`crate::Builder::layer`]: the layer on the app's own subscriber.
    Layer,
    /// [`crate::Builder::install_on`] or `#[taskscope::main]`: runtime hooks.
    Hooks,
}

impl Mode {
    /// How the user installs it, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Init => "taskscope::init()",
            Mode::Layer => "taskscope::Builder::layer()",
            Mode::Hooks => "taskscope::Builder::install_on() (or #[taskscope::main])",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The capture installed in this process, if any.
static INSTALLED: Mutex<Option<Mode>> = Mutex::new(None);
/// Whether the refusal of each mode was already printed.
static SAID: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

/// The claim of a capture, held while it is being installed.
pub(crate) struct Claim {
    mode: Mode,
    installed: MutexGuard<'static, Option<Mode>>,
}

impl Claim {
    /// The capture is installed: later claims of another kind are refused.
    pub(crate) fn installed(mut self) {
        *self.installed = Some(self.mode);
    }
}

/// Asks to install `mode`: refused when another kind is installed (or, for
/// a second layer, any). Keep the claim until the capture is in place, then
/// call [`Claim::installed`]; dropped without it, nothing is recorded (an
/// `init` that found another global subscriber leaves room for a layer).
pub(crate) fn claim(mode: Mode) -> Result<Claim, Error> {
    let installed = lock(&INSTALLED);
    match *installed {
        // Two runtimes with the hooks; or a second init(), which tracing refuses itself.
        Some(current) if current == mode && mode != Mode::Layer => {}
        Some(current) => {
            return Err(Error::CaptureConflict {
                installed: current.name(),
                refused: mode.name(),
            });
        }
        None => {}
    }
    Ok(Claim { mode, installed })
}

/// Prints `err` on stderr, once per refused mode in the process.
pub(crate) fn say_once(mode: Mode, err: &Error) {
    if !SAID[mode.index()].swap(true, Ordering::Relaxed) {
        eprintln!("{err}");
    }
}
