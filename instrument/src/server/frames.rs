//! HTTP/2 frame floods, counted on the bytes of each connection before
//! HTTP/2 sees them: a connection that sends control frames faster than any
//! viewer does is closed.
//!
//! Some floods cost a server little memory but CPU for every frame, and h2
//! bounds only some of them: it answers each PING and each SETTINGS before it
//! reads the next frame (so an unread answer stops the reading, but a client
//! that reads them costs one answer a frame), and it sends GOAWAY after
//! [`MAX_PENDING_RESETS`] streams reset before they were accepted (a stream
//! reset *after* it was accepted, the "rapid reset", is not counted). So each
//! connection's frames are counted by type here, in token buckets that refill
//! at a rate per second ([`LIMITS`]): one that empties its bucket is a flood,
//! and its connection is closed. The figures are far above what taskscope's
//! viewer sends (one PING each 5 s, one SETTINGS at the start, a call and a
//! reset per task detail opened) and far below what a flood needs to be felt.
//!
//! A PING acknowledgement for a ping the server did not send closes the
//! connection at once (the server's own PINGs are counted on the way out):
//! h2 would log a WARN for each, in the app's logs. The reset limits are set
//! above what the buckets let through, so h2's own limits (each logged once
//! by h2) are not reached first.

use tokio::time::Instant;

/// Streams a client may reset before the server accepts them, before h2
/// sends GOAWAY (h2's own counter: its default is 20). Above the RST_STREAM
/// burst of [`LIMITS`], so that the buckets close a flood first.
pub(crate) const MAX_PENDING_RESETS: usize = 128;

/// Streams the server may reset because of a client's errors, before h2
/// sends GOAWAY (h2's default, 1,024: at the HEADERS rate of [`LIMITS`],
/// more than 20 s of a sustained flood).
pub(crate) const MAX_ERROR_RESETS: usize = 1024;

/// Frame types (RFC 9113, 6).
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;

/// Size of a frame header.
const HEADER_LEN: usize = 9;

/// A class of frames and its allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit {
    /// What the frames are, for the log line.
    pub(crate) what: &'static str,
    /// Frames a second, sustained.
    pub(crate) per_second: u32,
    /// Frames at once, after a quiet period.
    pub(crate) burst: u32,
}

/// The allowance of each class: PING (either way), SETTINGS (either way),
/// RST_STREAM, HEADERS (new calls), and every other frame (DATA,
/// WINDOW_UPDATE, PRIORITY, CONTINUATION, unknown types).
pub(crate) const LIMITS: [Limit; 5] = [
    Limit {
        what: "PING",
        per_second: 10,
        burst: 40,
    },
    Limit {
        what: "SETTINGS",
        per_second: 5,
        burst: 20,
    },
    Limit {
        what: "RST_STREAM",
        per_second: 50,
        burst: 64,
    },
    Limit {
        what: "HEADERS",
        per_second: 50,
        burst: 200,
    },
    Limit {
        what: "other",
        per_second: 10_000,
        burst: 20_000,
    },
];

fn class(kind: u8) -> usize {
    match kind {
        PING => 0,
        SETTINGS => 1,
        RST_STREAM => 2,
        HEADERS => 3,
        _ => 4,
    }
}

const _: () = assert!(MAX_PENDING_RESETS > LIMITS[2].burst as usize);

/// Why a connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flood {
    /// Too many frames of one class.
    Frames(&'static Limit),
    /// A PING acknowledgement for a ping the server did not send.
    UnaskedPong,
}

impl std::fmt::Display for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flood::Frames(limit) => write!(
                f,
                "it sent more than {} {} frames at once (a flood: the limit is {} a second)",
                limit.burst, limit.what, limit.per_second
            ),
            Flood::UnaskedPong => f.write_str("it acknowledged a PING the server did not send"),
        }
    }
}

/// Finds the frame headers in a sequence of bytes given piece by piece.
#[derive(Debug, Default)]
struct Parser {
    /// The bytes of a frame header read so far.
    header: [u8; HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl Parser {
    /// Calls `frame(type, flags)` for each frame that begins in `bytes`;
    /// stops at the first error.
    fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        mut frame: impl FnMut(u8, u8) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < HEADER_LEN {
                break;
            }
            self.have = 0;
            let h = self.header;
            self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            frame(h[3], h[4])?;
        }
        Ok(())
    }
}

/// The ACK flag of PING and SETTINGS.
const ACK: u8 = 0x1;

/// The frames of one connection so far, both ways: each class's bucket for
/// what the client sends, and the PINGs the server sent that the client may
/// still acknowledge.
#[derive(Debug)]
pub(crate) struct FrameCounter {
    received: Parser,
    sent: Parser,
    /// Tokens left in each class's bucket.
    tokens: [f64; LIMITS.len()],
    /// When the buckets were last refilled.
    at: Instant,
    /// PINGs sent and not acknowledged yet.
    pings_out: u32,
}

impl FrameCounter {
    /// Full buckets, at `now`.
    pub(crate) fn new(now: Instant) -> FrameCounter {
        FrameCounter {
            received: Parser::default(),
            sent: Parser::default(),
            tokens: LIMITS.map(|l| f64::from(l.burst)),
            at: now,
            pings_out: 0,
        }
    }

    /// Counts the frames that begin in `bytes` (the next bytes the client
    /// sent, after the connection preface), at `now`.
    pub(crate) fn received(&mut self, bytes: &[u8], now: Instant) -> Result<(), Flood> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        for (tokens, limit) in self.tokens.iter_mut().zip(&LIMITS) {
            *tokens = (*tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst));
        }
        let (tokens, pings_out) = (&mut self.tokens, &mut self.pings_out);
        self.received.feed(bytes, |kind, flags| {
            if kind == PING && flags & ACK != 0 {
                if *pings_out == 0 {
                    return Err(Flood::UnaskedPong);
                }
                *pings_out -= 1;
            }
            let class = class(kind);
            if tokens[class] < 1.0 {
                return Err(Flood::Frames(&LIMITS[class]));
            }
            tokens[class] -= 1.0;
            Ok(())
        })
    }

    /// Notes the frames that begin in `bytes` (the next bytes the server
    /// wrote): the PINGs the client will acknowledge.
    pub(crate) fn sent(&mut self, bytes: &[u8]) {
        let pings_out = &mut self.pings_out;
        let _ = self.sent.feed(bytes, |kind, flags| {
            if kind == PING && flags & ACK == 0 {
                *pings_out = pings_out.saturating_add(1);
            }
            Ok::<(), ()>(())
        });
    }

    /// How long until a class that is empty now has a token again (for tests).
    #[cfg(test)]
    fn refill_of(class: usize) -> std::time::Duration {
        std::time::Duration::from_secs_f64(1.0 / f64::from(LIMITS[class].per_second))
    }
}

/// A frame header of type `kind` with `len` bytes of payload, then the payload.
#[cfg(test)]
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ping() -> Vec<u8> {
        frame(PING, 0, 0, &[7; 8])
    }

    #[test]
    fn a_ping_flood_is_caught_at_its_burst_whatever_the_read_sizes() {
        let now = Instant::now();
        let mut counter = FrameCounter::new(now);
        let burst = LIMITS[0].burst as usize;
        let pings: Vec<u8> = (0..burst).flat_map(|_| ping()).collect();
        // The burst passes, even cut in reads of 5 bytes.
        for piece in pings.chunks(5) {
            counter.received(piece, now).unwrap();
        }
        // One more does not.
        let err = counter.received(&ping(), now).unwrap_err();
        assert_eq!(err, Flood::Frames(&LIMITS[0]));
        assert_eq!(
            err.to_string(),
            "it sent more than 40 PING frames at once (a flood: the limit is 10 a second)"
        );
    }

    #[test]
    fn the_rate_refills_and_payloads_are_skipped() {
        let now = Instant::now();
        let mut counter = FrameCounter::new(now);
        // A DATA frame whose payload looks like PING headers: not counted as PINGs.
        let fake: Vec<u8> = (0..100).flat_map(|_| ping()).collect();
        counter.received(&frame(0x0, 0, 1, &fake), now).unwrap();
        let burst = LIMITS[0].burst as usize;
        for _ in 0..burst {
            counter.received(&ping(), now).unwrap();
        }
        assert!(counter.received(&ping(), now).is_err());
        // A tenth of a second later: one PING more is fine.
        let later = now + FrameCounter::refill_of(0);
        let mut counter2 = FrameCounter::new(now);
        for _ in 0..burst {
            counter2.received(&ping(), now).unwrap();
        }
        counter2.received(&ping(), later).unwrap();
        assert!(counter2.received(&ping(), later).is_err());
    }

    #[test]
    fn each_class_has_its_own_bucket() {
        let now = Instant::now();
        for (kind, class) in [(SETTINGS, 1), (RST_STREAM, 2), (HEADERS, 3), (0x8, 4)] {
            let mut counter = FrameCounter::new(now);
            for _ in 0..LIMITS[class].burst {
                counter.received(&frame(kind, 0, 1, &[0; 4]), now).unwrap();
            }
            // Other classes are untouched.
            counter.received(&ping(), now).unwrap();
            let err = counter
                .received(&frame(kind, 0, 1, &[0; 4]), now)
                .unwrap_err();
            assert_eq!(err, Flood::Frames(&LIMITS[class]));
        }
    }

    #[test]
    fn only_the_pings_the_server_sent_may_be_acknowledged() {
        let now = Instant::now();
        let mut counter = FrameCounter::new(now);
        let pong = frame(PING, ACK, 0, &[1; 8]);
        // The server's two keepalive PINGs, written in pieces.
        let out: Vec<u8> = [frame(PING, 0, 0, &[1; 8]), frame(0x0, 0, 1, &[0; 100])]
            .concat()
            .repeat(2);
        for piece in out.chunks(7) {
            counter.sent(piece);
        }
        // Acknowledging its own (an ACK is not a PING sent) is not.
        counter.sent(&pong);
        counter.received(&pong, now).unwrap();
        counter.received(&pong, now).unwrap();
        assert_eq!(counter.received(&pong, now), Err(Flood::UnaskedPong));
        assert_eq!(
            Flood::UnaskedPong.to_string(),
            "it acknowledged a PING the server did not send"
        );
    }

    #[test]
    fn a_viewer_stays_far_below_the_limits() {
        // What taskscope's viewer sends in a minute of use, at worst: SETTINGS
        // and its ACK, a PING each 5 s, 20 task details a second (each a
        // HEADERS, a DATA, and a reset when the next one replaces it), and
        // WINDOW_UPDATEs for 100 MB of updates.
        let start = Instant::now();
        let mut counter = FrameCounter::new(start);
        counter
            .received(&frame(SETTINGS, 0, 0, &[0; 18]), start)
            .unwrap();
        counter
            .received(&frame(SETTINGS, 1, 0, &[]), start)
            .unwrap();
        for tenth in 0..600u64 {
            let now = start + Duration::from_millis(100 * tenth);
            let mut bytes = Vec::new();
            if tenth % 50 == 0 {
                bytes.extend(ping());
            }
            if tenth % 100 == 0 {
                // The server's keepalive PING, and the viewer's answer.
                counter.sent(&frame(PING, 0, 0, &[2; 8]));
                bytes.extend(frame(PING, ACK, 0, &[2; 8]));
            }
            for stream in 0..2 {
                bytes.extend(frame(HEADERS, 4, stream, &[0; 60]));
                bytes.extend(frame(0x0, 1, stream, &[0; 16]));
                bytes.extend(frame(RST_STREAM, 0, stream, &[0; 4]));
            }
            for _ in 0..300 {
                bytes.extend(frame(0x8, 0, 1, &[0; 4]));
            }
            counter.received(&bytes, now).unwrap();
        }
    }
}
