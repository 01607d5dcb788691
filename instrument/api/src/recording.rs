//! The recording file format (`TASKSCOPE_RECORD`): what the app writes and
//! `taskscope replay` reads, in one place.
//!
//! A recording is a series of segment files: `PATH`, the one being written,
//! and `PATH.000001`, `PATH.000002`, … the older ones (the lower the number,
//! the older). Each segment is
//!
//! | bytes | what |
//! |---|---|
//! | 14 | [`MAGIC`], `TASKSCOPE-REC\n` |
//! | 4 | the format version, little-endian ([`FORMAT_VERSION`], 1) |
//! | a frame | a [`RecordingHeader`]: format and protocol versions, the app, when the segment and its run started |
//! | frames | a [`Record`] each, to the end of the file: one chunk of one update, exactly as a viewer receives it |
//!
//! and a frame is the message's length (a varint, as protobuf's
//! length-delimited messages), the message, and the CRC-32 (IEEE) of the
//! message's bytes (4 bytes, little-endian). A record's update is its last
//! field, so the app writes the bytes it encoded once for its viewers after a
//! few bytes of its own ([`record_frame`]), and a reader indexes a recording
//! by decoding each record's [`RecordHead`]
//! (sequence number, time, snapshot or delta), which skips the update.
//!
//! Every segment starts with a full snapshot, so a recording whose oldest
//! segments were dropped still starts with one. Within a version, fields may
//! be added to these messages (readers ignore unknown fields); anything else
//! needs a new [`FORMAT_VERSION`].
//!
//! ```
//! use taskscope_api::proto::{AppInfo, RecordHead, RecordingHeader};
//! use taskscope_api::recording::{self, SegmentReader};
//!
//! // A segment with one record, as the app writes it.
//! let header = RecordingHeader {
//!     format_version: recording::FORMAT_VERSION,
//!     protocol_version: taskscope_api::PROTOCOL_VERSION,
//!     app: Some(AppInfo { name: "app".into(), ..Default::default() }),
//!     ..Default::default()
//! };
//! let mut file = recording::segment_start(&header);
//! let update = b"\x12\x00"; // an encoded Update: an empty delta
//! let head = RecordHead { seq: 7, at_unix_ns: 1_000, snapshot: false };
//! let frame = recording::record_frame(&head, update);
//! file.extend_from_slice(&frame.prefix);
//! file.extend_from_slice(update);
//! file.extend_from_slice(&frame.crc);
//! assert_eq!(file.len(), header_len(&header) + recording::record_frame_len(&head, update.len()));
//!
//! // And read back.
//! let (read, mut reader) = SegmentReader::open(&file[..]).unwrap();
//! assert_eq!(read.app.unwrap().name, "app");
//! let frame = reader.next_frame().unwrap().unwrap();
//! let record = frame.record().unwrap();
//! assert_eq!((record.seq, record.at_unix_ns), (7, 1_000));
//! assert!(record.update.is_some());
//! assert!(reader.next_frame().unwrap().is_none());
//! # fn header_len(h: &RecordingHeader) -> usize { recording::segment_start(h).len() }
//! ```

use std::io::{self, Read};

use prost::Message;

use crate::proto::{Record, RecordHead, RecordingHeader};

/// The bytes every segment file starts with.
pub const MAGIC: &[u8; 14] = b"TASKSCOPE-REC\n";

/// The version of the file format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The longest message a frame may hold. The app writes chunks of about
/// 256 KiB (each under gRPC's 4 MiB); a length above this is corruption.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Bytes of the checksum after each message.
const CRC_LEN: usize = 4;

/// The key of `Record.update` (field 15, length-delimited): one byte.
const UPDATE_KEY: u8 = (15 << 3) | 2;

/// The bytes a segment file starts with: the magic bytes, the format version
/// and the header's frame.
pub fn segment_start(header: &RecordingHeader) -> Vec<u8> {
    let message = header.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + 10 + message.len() + CRC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    prost::encoding::encode_varint(message.len() as u64, &mut out);
    out.extend_from_slice(&message);
    out.extend_from_slice(&crc32fast::hash(&message).to_le_bytes());
    out
}

/// The frame around one record: write `prefix`, then the encoded update,
/// then `crc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFrame {
    /// The frame's length, the record's fields before its update, and the
    /// update's key and length.
    pub prefix: Vec<u8>,
    /// The checksum of the record (little-endian CRC-32).
    pub crc: [u8; 4],
}

/// The frame of a record made of `head` and `update` (an `Update` encoded
/// once for every viewer): no byte of the update is copied.
pub fn record_frame(head: &RecordHead, update: &[u8]) -> RecordFrame {
    let head_len = head.encoded_len();
    let message_len = message_len(head_len, update.len());
    let mut prefix = Vec::with_capacity(10 + head_len + 1 + 10);
    prost::encoding::encode_varint(message_len as u64, &mut prefix);
    let message_start = prefix.len();
    head.encode_raw(&mut prefix);
    prefix.push(UPDATE_KEY);
    prost::encoding::encode_varint(update.len() as u64, &mut prefix);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&prefix[message_start..]);
    crc.update(update);
    RecordFrame {
        prefix,
        crc: crc.finalize().to_le_bytes(),
    }
}

/// Bytes a record of `head` and an update of `update_len` bytes takes in the
/// file, frame included.
pub fn record_frame_len(head: &RecordHead, update_len: usize) -> usize {
    let message = message_len(head.encoded_len(), update_len);
    prost::length_delimiter_len(message) + message + CRC_LEN
}

fn message_len(head_len: usize, update_len: usize) -> usize {
    head_len + 1 + prost::length_delimiter_len(update_len) + update_len
}

/// A [`Record`] read for its update's runtime metrics, drop counters, time
/// and findings only: the tasks (most of an update's bytes) are skipped
/// unread. A replay reads the updates this way where it needs only the
/// runtime's history (the plots) and not the tasks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordMetrics {
    /// The update (`Record.update`), without its tasks.
    #[prost(message, optional, tag = "15")]
    pub update: Option<UpdateMetrics>,
}

/// An `Update` without its tasks (see [`RecordMetrics`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateMetrics {
    /// A snapshot chunk or a delta chunk.
    #[prost(oneof = "update_metrics::Kind", tags = "1, 2")]
    pub kind: Option<update_metrics::Kind>,
}

/// The kinds of [`UpdateMetrics`].
pub mod update_metrics {
    /// A snapshot chunk or a delta chunk, without their tasks.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// `Update.snapshot`.
        #[prost(message, tag = "1")]
        Snapshot(super::SnapshotMetrics),
        /// `Update.delta`.
        #[prost(message, tag = "2")]
        Delta(super::DeltaMetrics),
    }
}

/// A `Snapshot` chunk without its tasks (same field numbers).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotMetrics {
    /// `Snapshot.findings`.
    #[prost(string, repeated, tag = "6")]
    pub findings: Vec<String>,
    /// `Snapshot.metrics`.
    #[prost(message, optional, tag = "7")]
    pub metrics: Option<crate::proto::RuntimeMetrics>,
    /// `Snapshot.dropped`.
    #[prost(message, optional, tag = "8")]
    pub dropped: Option<crate::proto::Dropped>,
    /// `Snapshot.at_unix_ns`.
    #[prost(uint64, tag = "9")]
    pub at_unix_ns: u64,
}

/// A `Delta` chunk without its tasks (same field numbers).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaMetrics {
    /// `Delta.findings`.
    #[prost(string, repeated, tag = "5")]
    pub findings: Vec<String>,
    /// `Delta.metrics`.
    #[prost(message, optional, tag = "6")]
    pub metrics: Option<crate::proto::RuntimeMetrics>,
    /// `Delta.dropped`.
    #[prost(message, optional, tag = "7")]
    pub dropped: Option<crate::proto::Dropped>,
    /// `Delta.at_unix_ns`.
    #[prost(uint64, tag = "8")]
    pub at_unix_ns: u64,
}

/// What is wrong with a recording's bytes.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with [`MAGIC`].
    #[error("it is not a taskscope recording (it does not start with \"TASKSCOPE-REC\"){hint}")]
    NotARecording {
        /// A guess at what it is, as a clause starting with `; ` (or empty).
        hint: &'static str,
    },
    /// Another version of the format.
    #[error(
        "it is a taskscope recording of format version {found}; this taskscope reads format version {FORMAT_VERSION} (use the taskscope release of the app that recorded it)"
    )]
    Version {
        /// The version the file says.
        found: u32,
    },
    /// The bytes end in the middle of something (the app stopped while it
    /// wrote it, or the file is being written).
    #[error("it is cut short at byte {offset}: {what}")]
    Truncated {
        /// Where what is cut short starts.
        offset: u64,
        /// What is cut short.
        what: &'static str,
    },
    /// Bytes that cannot be what the format says.
    #[error("it is corrupt at byte {offset}: {what}")]
    Corrupt {
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Reading failed.
    #[error("it cannot be read: {0}")]
    Io(#[from] io::Error),
}

impl FormatError {
    /// Whether the error is the end of the bytes coming too early (a last
    /// record cut short) rather than bytes that are wrong.
    pub fn is_truncated(&self) -> bool {
        matches!(self, FormatError::Truncated { .. })
    }
}

/// One frame's message, its checksum verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame starts in the file.
    pub offset: u64,
    /// Bytes the frame takes in the file.
    pub len: u64,
    /// The message.
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The record's head (its update is skipped, not decoded).
    pub fn head(&self) -> Result<RecordHead, FormatError> {
        let head = RecordHead::decode(&self.bytes[..]).map_err(|e| self.corrupt(e))?;
        Ok(head)
    }

    /// The whole record. A record without an update is corrupt (a run of
    /// zero bytes reads as empty frames: a file whose end was never written).
    pub fn record(&self) -> Result<Record, FormatError> {
        let record = Record::decode(&self.bytes[..]).map_err(|e| self.corrupt(e))?;
        if record.update.as_ref().is_none_or(|u| u.kind.is_none()) {
            return Err(FormatError::Corrupt {
                offset: self.offset,
                what: "a record without an update".into(),
            });
        }
        Ok(record)
    }

    /// The record's update without its tasks ([`RecordMetrics`]).
    pub fn metrics(&self) -> Result<UpdateMetrics, FormatError> {
        let record = RecordMetrics::decode(&self.bytes[..]).map_err(|e| self.corrupt(e))?;
        record
            .update
            .filter(|u| u.kind.is_some())
            .ok_or_else(|| FormatError::Corrupt {
                offset: self.offset,
                what: "a record without an update".into(),
            })
    }

    fn corrupt(&self, err: prost::DecodeError) -> FormatError {
        FormatError::Corrupt {
            offset: self.offset,
            what: format!("not a record: {err}"),
        }
    }
}

/// Reads a segment from its start: [`SegmentReader::open`] checks the magic
/// bytes and the version and returns the header, then
/// [`SegmentReader::next_frame`] returns each record's frame.
#[derive(Debug)]
pub struct SegmentReader<R> {
    reader: R,
    offset: u64,
}

impl<R: Read> SegmentReader<R> {
    /// Reads the start of a segment: its header, and a reader positioned at
    /// its first record.
    pub fn open(mut reader: R) -> Result<(RecordingHeader, SegmentReader<R>), FormatError> {
        let mut magic = [0u8; MAGIC.len()];
        let got = read_up_to(&mut reader, &mut magic)?;
        if got == 0 {
            return Err(FormatError::Truncated {
                offset: 0,
                what: "the file is empty",
            });
        }
        if magic[..got] != MAGIC[..got] {
            let hint = match magic[0] {
                b'{' => "; it looks like a JSON-lines report: read it with `taskscope report`",
                _ => "",
            };
            return Err(FormatError::NotARecording { hint });
        }
        if got < MAGIC.len() {
            return Err(FormatError::Truncated {
                offset: 0,
                what: "the magic bytes",
            });
        }
        let mut version = [0u8; 4];
        if read_up_to(&mut reader, &mut version)? < 4 {
            return Err(FormatError::Truncated {
                offset: MAGIC.len() as u64,
                what: "the format version",
            });
        }
        let found = u32::from_le_bytes(version);
        if found != FORMAT_VERSION {
            return Err(FormatError::Version { found });
        }
        let mut segment = SegmentReader {
            reader,
            offset: (MAGIC.len() + 4) as u64,
        };
        let Some(frame) = segment.next_frame()? else {
            return Err(FormatError::Truncated {
                offset: segment.offset,
                what: "the header",
            });
        };
        let header =
            RecordingHeader::decode(&frame.bytes[..]).map_err(|e| FormatError::Corrupt {
                offset: frame.offset,
                what: format!("not a recording header: {e}"),
            })?;
        Ok((header, segment))
    }

    /// The next frame, its checksum verified; `None` at the end of the file
    /// (exactly after a frame).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FormatError> {
        let frame = read_frame(&mut self.reader, self.offset)?;
        if let Some(frame) = &frame {
            self.offset += frame.len;
        }
        Ok(frame)
    }

    /// Where the next frame starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Reads one frame starting at `offset` (the reader is there): its message,
/// checksum verified. `None` when the reader ends before the frame's first
/// byte.
pub fn read_frame<R: Read>(reader: &mut R, offset: u64) -> Result<Option<Frame>, FormatError> {
    let mut len = 0u64;
    let mut shift = 0;
    let mut varint_len = 0u64;
    loop {
        let mut byte = [0u8];
        if read_up_to(reader, &mut byte)? == 0 {
            if varint_len == 0 {
                return Ok(None);
            }
            return Err(FormatError::Truncated {
                offset,
                what: "a record's length",
            });
        }
        varint_len += 1;
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(FormatError::Corrupt {
                offset,
                what: "a record's length is not a number".into(),
            });
        }
    }
    if len > MAX_FRAME as u64 {
        return Err(FormatError::Corrupt {
            offset,
            what: format!(
                "a record of {len} bytes, longer than any taskscope writes ({MAX_FRAME})"
            ),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    if read_up_to(reader, &mut bytes)? < bytes.len() {
        return Err(FormatError::Truncated {
            offset,
            what: "a record",
        });
    }
    let mut crc = [0u8; CRC_LEN];
    if read_up_to(reader, &mut crc)? < CRC_LEN {
        return Err(FormatError::Truncated {
            offset,
            what: "a record's checksum",
        });
    }
    if u32::from_le_bytes(crc) != crc32fast::hash(&bytes) {
        return Err(FormatError::Corrupt {
            offset,
            what: "a record whose checksum does not match its bytes".into(),
        });
    }
    Ok(Some(Frame {
        offset,
        len: varint_len + len + CRC_LEN as u64,
        bytes,
    }))
}

/// Fills `buf` as far as the reader goes; returns how much was read.
fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, Update, update};

    fn header() -> RecordingHeader {
        RecordingHeader {
            format_version: FORMAT_VERSION,
            protocol_version: crate::PROTOCOL_VERSION,
            app: Some(proto::AppInfo {
                name: "app".into(),
                pid: 42,
                ..Default::default()
            }),
            started_unix_ns: 5,
            run_started_unix_ns: 4,
            segment: 0,
        }
    }

    fn delta(at: u64) -> Vec<u8> {
        Update {
            kind: Some(update::Kind::Delta(proto::Delta {
                last: true,
                at_unix_ns: at,
                findings: vec!["x".repeat(300)],
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    fn segment(records: &[(u64, u64)]) -> Vec<u8> {
        let mut file = segment_start(&header());
        for &(seq, at) in records {
            let head = RecordHead {
                seq,
                at_unix_ns: at,
                snapshot: false,
            };
            let update = delta(at);
            let frame = record_frame(&head, &update);
            let before = file.len();
            file.extend_from_slice(&frame.prefix);
            file.extend_from_slice(&update);
            file.extend_from_slice(&frame.crc);
            assert_eq!(file.len() - before, record_frame_len(&head, update.len()));
        }
        file
    }

    fn read_all(bytes: &[u8]) -> (Vec<Record>, Option<FormatError>) {
        let (_, mut reader) = SegmentReader::open(bytes).unwrap();
        let mut records = Vec::new();
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => match frame.record() {
                    Ok(record) => records.push(record),
                    Err(e) => return (records, Some(e)),
                },
                Ok(None) => return (records, None),
                Err(e) => return (records, Some(e)),
            }
        }
    }

    #[test]
    fn a_record_framed_around_encoded_bytes_decodes_as_the_message() {
        let file = segment(&[(1, 10), (2, 20)]);
        let (records, err) = read_all(&file);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(records.len(), 2);
        assert_eq!((records[1].seq, records[1].at_unix_ns), (2, 20));
        let Some(update::Kind::Delta(d)) = &records[1].update.as_ref().unwrap().kind else {
            panic!("a delta")
        };
        assert_eq!(d.at_unix_ns, 20);
        // The head alone, from the same bytes.
        let (_, mut reader) = SegmentReader::open(&file[..]).unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(frame.head().unwrap().seq, 1);
        assert_eq!(frame.offset, segment(&[]).len() as u64);
    }

    #[test]
    fn a_records_metrics_are_read_without_its_tasks() {
        let update = Update {
            kind: Some(update::Kind::Snapshot(proto::Snapshot {
                last: true,
                tasks: vec![
                    proto::Task {
                        id: 9,
                        ..Default::default()
                    };
                    3
                ],
                findings: vec!["f".into()],
                metrics: Some(proto::RuntimeMetrics {
                    workers: 4,
                    ..Default::default()
                }),
                at_unix_ns: 77,
                ..Default::default()
            })),
        }
        .encode_to_vec();
        let head = RecordHead {
            seq: 1,
            at_unix_ns: 77,
            snapshot: true,
        };
        let frame = record_frame(&head, &update);
        let mut file = segment_start(&header());
        file.extend_from_slice(&frame.prefix);
        file.extend_from_slice(&update);
        file.extend_from_slice(&frame.crc);
        let (_, mut reader) = SegmentReader::open(&file[..]).unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        let Some(update_metrics::Kind::Snapshot(s)) = frame.metrics().unwrap().kind else {
            panic!("a snapshot")
        };
        assert_eq!((s.metrics.unwrap().workers, s.at_unix_ns), (4, 77));
        assert_eq!(s.findings, ["f"]);
    }

    #[test]
    fn a_cut_last_record_is_truncated_and_the_records_before_it_read() {
        let file = segment(&[(1, 10), (2, 20), (3, 30)]);
        let whole = segment(&[(1, 10), (2, 20)]).len();
        for cut in [whole + 1, whole + 3, file.len() - 2] {
            let (records, err) = read_all(&file[..cut]);
            assert_eq!(records.len(), 2, "cut at {cut}");
            let err = err.expect("an error");
            assert!(err.is_truncated(), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("it is cut short at byte {whole}")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_corrupt_not_a_wrong_record() {
        let mut file = segment(&[(1, 10), (2, 20)]);
        let second = segment(&[(1, 10)]).len();
        let at = second + 12;
        file[at] ^= 0x20;
        let (records, err) = read_all(&file);
        assert_eq!(records.len(), 1);
        let err = err.unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "it is corrupt at byte {second}: a record whose checksum does not match its bytes"
            )
        );
    }

    #[test]
    fn zeros_at_the_end_and_absurd_lengths_are_corrupt() {
        let mut file = segment(&[(1, 10)]);
        let end = file.len();
        file.extend_from_slice(&[0u8; 64]);
        let (records, err) = read_all(&file);
        assert_eq!(records.len(), 1);
        let Some(FormatError::Corrupt { offset, what }) = err else {
            panic!("corrupt")
        };
        assert_eq!(
            (offset, what.as_str()),
            (end as u64, "a record without an update")
        );

        let mut file = segment(&[]);
        prost::encoding::encode_varint(1 << 40, &mut file);
        let (_, err) = read_all(&file);
        assert!(
            err.unwrap()
                .to_string()
                .contains("longer than any taskscope writes"),
        );
    }

    #[test]
    fn other_files_and_versions_say_what_they_are() {
        let err = SegmentReader::open(&b"{\"v\":1,\"kind\":\"slow_poll\"}\n"[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is not a taskscope recording (it does not start with \"TASKSCOPE-REC\"); it looks like a JSON-lines report: read it with `taskscope report`"
        );
        let err = SegmentReader::open(&b"\x7fELF\x02\x01"[..]).unwrap_err();
        assert!(
            matches!(err, FormatError::NotARecording { hint: "" }),
            "{err}"
        );
        let err = SegmentReader::open(&b""[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is cut short at byte 0: the file is empty"
        );
        let err = SegmentReader::open(&MAGIC[..5]).unwrap_err();
        assert!(err.is_truncated(), "{err}");

        let mut file = segment(&[]);
        file[MAGIC.len()] = 2;
        let err = SegmentReader::open(&file[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is a taskscope recording of format version 2; this taskscope reads format version 1 (use the taskscope release of the app that recorded it)"
        );
        let file = segment(&[]);
        let err = SegmentReader::open(&file[..file.len() - 1]).unwrap_err();
        assert!(err.is_truncated(), "{err}");
    }
}
