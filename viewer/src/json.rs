//! JSON for a terminal: what `dump --json` and `report --json` print.
//!
//! serde_json escapes the C0 controls (ESC, BEL, CR, ...) in strings, but
//! writes DEL and the C1 controls (U+0080 to U+009F; U+009B is a CSI to some
//! terminals) as they are. [`pretty`] escapes those too (`\u009b`): the
//! output is the same JSON (every string decodes to the same value), and no
//! control character reaches the terminal.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter, Serializer};

/// `value` as pretty-printed JSON, with no raw control character in it.
///
/// ```
/// let text = taskscope_viewer::json::pretty(&["a\u{1b}[2J\u{9b}31m\u{7f}"]);
/// assert_eq!(text, "[\n  \"a\\u001b[2J\\u009b31m\\u007f\"\n]");
/// let back: Vec<String> = serde_json::from_str(&text).unwrap();
/// assert_eq!(back, ["a\u{1b}[2J\u{9b}31m\u{7f}"]);
/// ```
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = Serializer::with_formatter(&mut out, Escaping(PrettyFormatter::new()));
    // Plain structs of strings and numbers, into memory: it cannot fail; say so if it does.
    if let Err(err) = value.serialize(&mut serializer) {
        return format!("{{\"error\":{:?}}}", err.to_string());
    }
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// serde_json's pretty layout; strings with DEL and C1 escaped.
struct Escaping(PrettyFormatter<'static>);

impl Formatter for Escaping {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| c.is_control()) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().expect("found at `at`");
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_json_as_serde_json_with_no_control_character() {
        let value = serde_json::json!({
            "name": "x\u{1b}]52;c;aGk=\u{7}\u{9b}2J\r\n\u{7f}\u{85}é漢🦀",
            "n": [1, 2.5, null],
            "nested": {"empty": [], "o": {}},
        });
        let ours = pretty(&value);
        assert!(!ours.chars().any(|c| c.is_control() && c != '\n'), "{ours}");
        let back: serde_json::Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(back, value);
        // Only the strings' escapes differ from serde_json's own pretty form.
        let theirs = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(
            ours.replace("\\u009b", "\u{9b}")
                .replace("\\u007f", "\u{7f}")
                .replace("\\u0085", "\u{85}"),
            theirs
        );
    }
}
