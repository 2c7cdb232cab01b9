//! RESP: the request parser, the reply encoder and Redis's argument splitter.

mod reply;
mod request;
mod splitargs;

pub use reply::{Protocol, Reply};
pub use request::{INLINE_MAX_SIZE, Limits, ProtocolError, RequestParser, peek_requests};
pub use splitargs::split_args;
