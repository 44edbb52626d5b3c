//! The frames on a worker's pipes: the one home of the pool's wire format.
//!
//! All integers little-endian:
//!
//! ```text
//! task:  call u64 | chunk u64 | start u64 | runner u64 | task u64 | len u32 | payload
//! reply: call u64 | chunk u64 | status u8 | offset u64 | len u32 | payload
//! ```
//!
//! A task frame whose `runner` is 0 tells the worker to exit. `payload` is the chunk's
//! inputs encoded with `postcard` (task), its outputs (reply, `STATUS_OK`) or the
//! panic message of the input at `offset` (reply, `STATUS_FAILED`). A length that does
//! not fit in its `u32` is a typed error before anything is written: cut to 32 bits it
//! would desynchronise the pipe, and the worker would read user bytes as a header.

use super::PoolError;

/// The size of a task frame's header.
pub(super) const TASK_HEADER: usize = 8 * 5 + 4;
/// The size of a reply frame's header.
pub(super) const REPLY_HEADER: usize = 8 * 2 + 1 + 8 + 4;
/// A reply's status: the chunk's outputs follow.
pub(super) const STATUS_OK: u8 = 0;
/// A reply's status: the input at `offset` panicked; its message follows.
pub(super) const STATUS_FAILED: u8 = 1;
/// The largest payload a frame can carry.
pub(super) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// A task frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskHeader {
    pub(super) call: u64,
    pub(super) chunk: u64,
    /// The index of the chunk's first input in its call.
    pub(super) start: u64,
    /// The address of the `Runner` that decodes and runs the chunk; 0: stop.
    pub(super) runner: u64,
    /// The address of the task function.
    pub(super) task: u64,
    pub(super) len: u32,
}

/// A reply frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReplyHeader {
    pub(super) call: u64,
    pub(super) chunk: u64,
    pub(super) status: u8,
    /// The offset in the chunk of the input that failed.
    pub(super) offset: u64,
    pub(super) len: u32,
}

/// The length of a payload as a frame carries it, or the error that refuses it.
pub(super) fn payload_len(bytes: usize) -> Result<u32, PoolError> {
    u32::try_from(bytes).map_err(|_| PoolError::TooLarge {
        bytes,
        max: MAX_PAYLOAD,
    })
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

impl TaskHeader {
    /// Writes the header into the first [`TASK_HEADER`] bytes of `frame`, taking the
    /// length from what follows them.
    ///
    /// # Errors
    /// [`PoolError::TooLarge`] when the payload does not fit; `frame` is then unchanged.
    pub(super) fn write(
        frame: &mut [u8],
        call: u64,
        chunk: u64,
        start: u64,
        runner: u64,
        task: u64,
    ) -> Result<(), PoolError> {
        let len = payload_len(frame.len() - TASK_HEADER)?;
        frame[0..8].copy_from_slice(&call.to_le_bytes());
        frame[8..16].copy_from_slice(&chunk.to_le_bytes());
        frame[16..24].copy_from_slice(&start.to_le_bytes());
        frame[24..32].copy_from_slice(&runner.to_le_bytes());
        frame[32..40].copy_from_slice(&task.to_le_bytes());
        frame[40..44].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// The stop frame: a header whose runner is 0.
    pub(super) fn stop() -> [u8; TASK_HEADER] {
        [0; TASK_HEADER]
    }

    pub(super) fn read(header: &[u8; TASK_HEADER]) -> TaskHeader {
        TaskHeader {
            call: u64_at(header, 0),
            chunk: u64_at(header, 8),
            start: u64_at(header, 16),
            runner: u64_at(header, 24),
            task: u64_at(header, 32),
            len: u32_at(header, 40),
        }
    }
}

impl ReplyHeader {
    /// Writes the header into the first [`REPLY_HEADER`] bytes of `frame`, taking the
    /// length from what follows them.
    ///
    /// # Errors
    /// [`PoolError::TooLarge`] when the payload does not fit; `frame` is then unchanged.
    pub(super) fn write(
        frame: &mut [u8],
        call: u64,
        chunk: u64,
        status: u8,
        offset: u64,
    ) -> Result<(), PoolError> {
        let len = payload_len(frame.len() - REPLY_HEADER)?;
        frame[0..8].copy_from_slice(&call.to_le_bytes());
        frame[8..16].copy_from_slice(&chunk.to_le_bytes());
        frame[16] = status;
        frame[17..25].copy_from_slice(&offset.to_le_bytes());
        frame[25..29].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// The header at the start of `bytes`, which holds at least [`REPLY_HEADER`].
    pub(super) fn read(bytes: &[u8]) -> ReplyHeader {
        ReplyHeader {
            call: u64_at(bytes, 0),
            chunk: u64_at(bytes, 8),
            status: bytes[16],
            offset: u64_at(bytes, 17),
            len: u32_at(bytes, 25),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_what_was_written() {
        let mut frame = vec![0; TASK_HEADER + 3];
        TaskHeader::write(&mut frame, 1, 2, 3, 4, 5).unwrap();
        let header: [u8; TASK_HEADER] = frame[..TASK_HEADER].try_into().unwrap();
        assert_eq!(
            TaskHeader::read(&header),
            TaskHeader {
                call: 1,
                chunk: 2,
                start: 3,
                runner: 4,
                task: 5,
                len: 3
            }
        );
        let mut reply = vec![0; REPLY_HEADER + 2];
        ReplyHeader::write(&mut reply, 6, 7, STATUS_FAILED, 8).unwrap();
        assert_eq!(
            ReplyHeader::read(&reply),
            ReplyHeader {
                call: 6,
                chunk: 7,
                status: STATUS_FAILED,
                offset: 8,
                len: 2
            }
        );
    }

    #[test]
    fn a_payload_over_four_gib_is_refused_not_cut() {
        assert_eq!(payload_len(MAX_PAYLOAD).unwrap(), u32::MAX);
        assert!(matches!(
            payload_len(MAX_PAYLOAD + 1),
            Err(PoolError::TooLarge { bytes, .. }) if bytes == MAX_PAYLOAD + 1
        ));
    }
}

#[cfg(test)]
mod large_tests {
    use super::*;

    #[test]
    fn a_frame_over_four_gib_gets_an_error_and_no_header() {
        // calloc'd and never touched: 4 GiB of address space, not of memory.
        let mut frame = vec![0u8; TASK_HEADER + MAX_PAYLOAD + 1];
        let outcome = TaskHeader::write(&mut frame, 1, 2, 3, 4, 5);
        assert!(matches!(outcome, Err(PoolError::TooLarge { .. })));
        assert!(
            frame[..TASK_HEADER].iter().all(|b| *b == 0),
            "nothing written"
        );
    }
}
