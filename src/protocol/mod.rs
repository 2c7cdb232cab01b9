//! RESP: the request parser, the reply encoder and Redis's argument splitter.

mod reply;
mod request;
mod splitargs;

pub use reply::{Protocol, Reply};
pub use request::{INLINE_MAX_SIZE, Limits, ProtocolError, RequestParser, peek_requests};
pub use splitargs::split_args;

/// A command as a RESP array of bulk strings: how the append-only file and the replication
/// stream carry it.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}
