//! Streaming adapter: chunks an `io::Read` with a bounded buffer.

use std::io::{self, Read};

use crate::cdc::Chunker;

/// Reads from `R` and yields the chunks [`Chunker::cut_all`] would produce for
/// the whole stream, as owned buffers.
///
/// Memory is bounded: one buffer of `2 * max_size` bytes. Reads ask for all
/// free space at the buffer's tail (at least `max_size` bytes); the unchunked
/// remainder (less than `max_size`) is moved to the front only when the tail
/// has less than `max_size` bytes free. Short reads and `Interrupted` errors
/// are handled; any other read error is yielded once and ends the iteration.
pub struct ChunkReader<R: Read> {
    chunker: Chunker,
    reader: R,
    buf: Vec<u8>,
    /// Start of the unchunked data in `buf`.
    start: usize,
    /// End of the valid data in `buf`.
    end: usize,
    /// No cut length below this, relative to `start`, is a content-defined cut.
    resume: usize,
    eof: bool,
    failed: bool,
}

impl<R: Read> ChunkReader<R> {
    /// Wraps `reader`; nothing is read until the first call to `next`.
    pub fn new(chunker: Chunker, reader: R) -> Self {
        ChunkReader {
            chunker,
            reader,
            buf: Vec::new(),
            start: 0,
            end: 0,
            resume: 0,
            eof: false,
            failed: false,
        }
    }

    /// Reads once into the buffer's free tail, compacting first if needed.
    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.params().max_size;
        if self.buf.is_empty() {
            self.buf = vec![0u8; 2 * max];
        }
        if self.buf.len() - self.end < max {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let data = &self.buf[self.start..self.end];
            if let Some(len) = self.chunker.next_cut_from(data, self.eof, self.resume) {
                let chunk = data[..len].to_vec();
                self.start += len;
                self.resume = 0;
                return Some(Ok(chunk));
            }
            if self.eof {
                return None;
            }
            // No cut among lengths <= data.len(): resume after them.
            self.resume = data.len() + 1;
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}
