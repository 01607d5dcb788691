//! Stacks of blocked threads (watchdog): capture on one thread, symbolize on another.
//! (Being written: see the watchdog issue.)
