//! The console stream: splitting COM1 bytes into records and text, and
//! decoding each record with the `defmt` table of the ELF that wrote it.
//!
//! The framing is `capabilities::logframe`. Text outside records (a kernel
//! panic, QEMU's own messages) is passed through line by line, so nothing
//! the machine printed is lost even when it cannot be decoded. A line that
//! carries a backtrace is followed by the functions and lines it names
//! ([`crate::symbols`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use capabilities::logframe::{self, HEADER_LEN};
use defmt_decoder::{DecodeError, StreamDecoder, Table};

use crate::symbols::{self, Symbols};

/// One line of output, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Microseconds since the machine started, for records.
    pub micros: Option<u64>,
    /// Who wrote it: `kernel`, a task name, or `console` for plain text.
    pub source: String,
    /// `defmt` level (`info`, `error`, ...) for records.
    pub level: Option<&'static str>,
    /// The message.
    pub text: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.micros {
            Some(micros) => write!(f, "{:>4}.{:06} ", micros / 1_000_000, micros % 1_000_000)?,
            None => write!(f, "{:>11} ", "")?,
        }
        write!(f, "{:<14} {:<5} {}", self.source, self.level.unwrap_or(""), self.text)
    }
}

/// The `defmt` tables of the kernel and every task, by record tag, and
/// their ELFs for backtraces.
#[derive(Default)]
pub struct Tables {
    entries: HashMap<u8, (String, Table)>,
    symbols: Symbols,
}

impl Tables {
    /// No tables yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// No tables yet; backtraces show source files relative to `root`.
    pub fn with_source_root(root: PathBuf) -> Self {
        Self { entries: HashMap::new(), symbols: Symbols::new(Some(root)) }
    }

    /// Reads the table of the ELF at `elf` for records tagged `tag`,
    /// written by `name`, and looks up `name`'s backtraces in that ELF.
    pub fn add(&mut self, tag: u8, name: &str, elf: &Path) -> Result<()> {
        let bytes = std::fs::read(elf).with_context(|| format!("cannot read {}", elf.display()))?;
        let table = Table::parse(&bytes)
            .with_context(|| format!("defmt table of `{name}`"))?
            .ok_or_else(|| anyhow!("`{name}` has no defmt table (was it linked with -Tdefmt.x?)"))?;
        self.entries.insert(tag, (name.to_owned(), table));
        self.symbols.add(name, elf);
        Ok(())
    }

    /// A decoder for a fresh console stream.
    pub fn console(&self) -> Console<'_> {
        let decoders = self
            .entries
            .iter()
            .map(|(&tag, (name, table))| (tag, (name.clone(), table.new_stream_decoder())))
            .collect();
        Console { decoders, symbols: self.symbols.reader(), state: State::Text, text: Vec::new() }
    }
}

type Decoder<'t> = Box<dyn StreamDecoder + Send + Sync + 't>;

enum State {
    Text,
    Header(Vec<u8>),
    Payload { header: logframe::Header, bytes: Vec<u8> },
}

/// Splits and decodes one console stream.
pub struct Console<'t> {
    decoders: HashMap<u8, (String, Decoder<'t>)>,
    symbols: symbols::Reader<'t>,
    state: State,
    text: Vec<u8>,
}

impl Console<'_> {
    /// Consumes `bytes`, calling `line` for every complete line.
    pub fn feed(&mut self, bytes: &[u8], line: &mut impl FnMut(LogLine)) {
        for &byte in bytes {
            self.state = match std::mem::replace(&mut self.state, State::Text) {
                State::Text if byte == logframe::RECORD_MARKER => {
                    self.flush_text(line);
                    State::Header(vec![byte])
                }
                State::Text => {
                    if byte == b'\n' {
                        self.flush_text(line);
                    } else if byte != b'\r' {
                        self.text.push(byte);
                    }
                    State::Text
                }
                State::Header(mut bytes) => {
                    bytes.push(byte);
                    if bytes.len() < HEADER_LEN {
                        State::Header(bytes)
                    } else {
                        let raw: [u8; HEADER_LEN] = bytes.try_into().unwrap_or([0; HEADER_LEN]);
                        match logframe::parse_header(&raw) {
                            Some(header) if header.len == 0 => {
                                self.record(header, &[], line);
                                State::Text
                            }
                            Some(header) => {
                                State::Payload { header, bytes: Vec::with_capacity(usize::from(header.len)) }
                            }
                            None => State::Text,
                        }
                    }
                }
                State::Payload { header, mut bytes } => {
                    bytes.push(byte);
                    if bytes.len() < usize::from(header.len) {
                        State::Payload { header, bytes }
                    } else {
                        self.record(header, &bytes, line);
                        State::Text
                    }
                }
            };
        }
    }

    /// Emits whatever text is pending (call at end of stream).
    pub fn finish(&mut self, line: &mut impl FnMut(LogLine)) {
        self.flush_text(line);
    }

    fn flush_text(&mut self, line: &mut impl FnMut(LogLine)) {
        if self.text.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.text).into_owned();
        self.text.clear();
        self.emit(LogLine { micros: None, source: "console".into(), level: None, text }, line);
    }

    /// Hands `decoded` on, and after it, if it carries a backtrace, the
    /// functions and lines of its addresses.
    fn emit(&mut self, decoded: LogLine, line: &mut impl FnMut(LogLine)) {
        let trace = symbols::parse(&decoded.source, &decoded.text);
        let (micros, source) = (decoded.micros, decoded.source.clone());
        line(decoded);
        if let Some(trace) = trace {
            for text in self.symbols.explain(&trace) {
                line(LogLine { micros, source: source.clone(), level: None, text });
            }
        }
    }

    fn record(&mut self, header: logframe::Header, payload: &[u8], line: &mut impl FnMut(LogLine)) {
        let Some((name, decoder)) = self.decoders.get_mut(&header.tag) else {
            line(LogLine {
                micros: Some(header.micros),
                source: format!("tag {}", header.tag),
                level: None,
                text: format!("<{} bytes from a writer with no defmt table>", payload.len()),
            });
            return;
        };
        decoder.received(payload);
        let mut decoded = Vec::new();
        loop {
            match decoder.decode() {
                Ok(frame) => decoded.push(LogLine {
                    micros: Some(header.micros),
                    source: name.clone(),
                    level: frame.level().map(|level| level.as_str()),
                    text: frame.display_message().to_string(),
                }),
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => {
                    decoded.push(LogLine {
                        micros: Some(header.micros),
                        source: name.clone(),
                        level: None,
                        text: "<malformed log frame>".into(),
                    });
                    break;
                }
            }
        }
        for decoded in decoded {
            self.emit(decoded, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(console: &mut Console<'_>, bytes: &[u8]) -> Vec<LogLine> {
        let mut out = Vec::new();
        console.feed(bytes, &mut |line| out.push(line));
        console.finish(&mut |line| out.push(line));
        out
    }

    #[test]
    fn text_passes_through_around_records_from_unknown_writers() {
        let tables = Tables::new();
        let mut console = tables.console();
        let mut bytes = b"booting\r\n".to_vec();
        bytes.extend(logframe::header(3, 2, 1_500_000));
        bytes.extend([0xaa, 0xbb]);
        bytes.extend(b"!!! KERNEL PANIC: oops\n");
        let out = lines(&mut console, &bytes);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].text, "booting");
        assert_eq!(out[1].source, "tag 3");
        assert_eq!(out[1].micros, Some(1_500_000));
        assert_eq!(out[2].text, "!!! KERNEL PANIC: oops");
        assert_eq!(out[2].to_string(), format!("{:>11} console              !!! KERNEL PANIC: oops", ""));
    }

    #[test]
    fn a_stream_cut_inside_a_record_loses_only_that_record() {
        let tables = Tables::new();
        let mut console = tables.console();
        let mut bytes = logframe::header(1, 100, 0).to_vec();
        bytes.extend([1, 2, 3]);
        assert!(lines(&mut console, &bytes).is_empty());
    }
}
