//! What a client connection runs over: TCP, a Unix socket, or (through a socket pair) TLS.
//! The connection task waits for input before it takes a read buffer, so the stream must
//! offer readiness and non-blocking reads as tokio's TCP and Unix streams do.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

pub trait ClientStream: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

macro_rules! client_stream {
    ($stream:ty) => {
        impl ClientStream for $stream {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$stream>::readable(self)
            }

            fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$stream>::writable(self)
            }

            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                <$stream>::try_read_buf(self, buf)
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
