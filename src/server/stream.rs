//! What a client connection runs over: TCP, a Unix socket, or (through a socket pair) TLS.
//! The connection task waits for input before it takes a read buffer, so the stream must
//! offer readiness and non-blocking reads as tokio's TCP and Unix streams do.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;

use bytes::{BufMut, BytesMut};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::{TcpStream, UnixStream};

pub trait ClientStream: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

macro_rules! client_stream {
    ($stream:ty) => {
        impl ClientStream for $stream {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$stream>::readable(self)
            }

            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                let mut read = None;
                let result = self.try_io(Interest::READABLE, || {
                    read_once(SockRef::from(self), buf, &mut read)
                });
                read.map_or(result, Ok)
            }

            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$stream>::try_write(self, buf)
            }
        }
    };
}

/// One non-blocking read into `buf`'s spare room, run inside `try_io`; the count goes to
/// `read`. A read that leaves room unfilled drained the socket, so it answers WouldBlock to
/// make tokio clear the readiness, as a second read failing with EAGAIN would (tokio keeps the
/// readiness if data arrived since). Redis likewise reads once per readable event; at one
/// request per round trip the extra read was a third of all reads.
fn read_once(
    socket: SockRef<'_>,
    buf: &mut BytesMut,
    read: &mut Option<usize>,
) -> io::Result<usize> {
    let room = buf.spare_capacity_mut();
    let room_len = room.len();
    let n = socket.recv(room)?;
    // SAFETY: recv initialised the first n bytes of the spare room.
    unsafe { buf.advance_mut(n) };
    *read = Some(n);
    if n > 0 && n < room_len {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(n)
    }
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
