//! What a client connection runs over: TCP, a Unix socket, or (through a socket pair) TLS.
//! The connection task waits for input before it takes a read buffer, so the stream must
//! offer readiness and non-blocking reads as tokio's TCP and Unix streams do.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

pub trait ClientStream: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;

    /// Reads what has arrived into `buf`'s spare capacity. Unlike a `try_read_buf` after a
    /// readiness wait, a read that does not fill the space also clears the stream's readiness
    /// (tokio's `poll_read` does so), so the next wait goes to epoll instead of costing a read
    /// that finds nothing: one read per request at `-P 1`, as Redis.
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let mut spare = ReadBuf::uninit(buf.spare_capacity_mut());
        ready!(Pin::new(self).poll_read(cx, &mut spare))?;
        let n = spare.filled().len();
        // SAFETY: poll_read initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Poll::Ready(Ok(n))
    }
}

macro_rules! client_stream {
    ($stream:ty) => {
        impl ClientStream for $stream {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_read_ready(self, cx)
            }

            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_write_ready(self, cx)
            }

            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$stream>::try_write(self, buf)
            }
        }
    };
}

client_stream!(TcpStream);
client_stream!(UnixStream);

/// Where a client connected from and to, as CLIENT LIST shows them.
pub struct Peer {
    pub addr: String,
    pub local_addr: String,
    /// Loopback TCP or a Unix socket: what protected mode and `local` settings allow.
    pub local: bool,
}

impl Peer {
    pub fn tcp(stream: &TcpStream, peer: std::net::SocketAddr) -> Peer {
        Peer {
            addr: peer.to_string(),
            local_addr: stream
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            local: peer.ip().to_canonical().is_loopback(),
        }
    }

    /// Redis shows Unix socket clients as `path:0`.
    pub fn unix(path: &str) -> Peer {
        Peer {
            addr: format!("{path}:0"),
            local_addr: format!("{path}:0"),
            local: true,
        }
    }
}
