//! The typed call test tasks make to the forger.

use capabilities::ErrorCode;
use userlib::cap::{Cap, Endpoint};
use userlib::ipc::Buffer;

use crate::Op;

/// Asks the forger to do `op` with arguments `[a, b, c]`, sending the
/// capabilities in `send`; the value it answered.
pub fn call(
    forger: Cap<Endpoint>,
    buffer: &mut Buffer,
    op: Op,
    args: [u64; 3],
    send: &[u32],
) -> Result<u64, ErrorCode> {
    let [a, b, c] = args;
    let [status, value]: [u64; 2] = forger.ask(buffer, &[op as u64, a, b, c], send, 0)?;
    match status {
        0 => Ok(value),
        code => Err(ErrorCode::from_code(code).unwrap_or(ErrorCode::Malformed)),
    }
}
