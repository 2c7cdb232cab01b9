//! Replies the socket has not taken yet. A client that does not read its replies does not stop
//! its connection: its next commands still run and their replies queue here, as Redis keeps a
//! client's reply list, so that CLIENT LIST, the output buffer limits and client eviction see
//! what it holds (`client-output-buffer-limit`, `maxmemory-clients`).

use std::collections::VecDeque;
use std::io;

use super::stream::ClientStream;

#[derive(Default)]
pub struct Unsent {
    /// Reply buffers in the order they are to be written.
    chunks: VecDeque<Vec<u8>>,
    /// How much of the first chunk is written already.
    written: usize,
    /// Bytes still to write.
    len: usize,
}

impl Unsent {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues `buf` behind what waits already, `from` bytes of it written (only when nothing
    /// waits: a later buffer cannot have been written in part).
    pub fn push(&mut self, buf: Vec<u8>, from: usize) {
        debug_assert!(from == 0 || self.chunks.is_empty());
        if from == buf.len() {
            return;
        }
        if self.chunks.is_empty() {
            self.written = from;
        }
        self.len += buf.len() - from;
        self.chunks.push_back(buf);
    }

    /// Writes what the socket takes now; returns how many bytes that was.
    pub fn write_to(&mut self, stream: &impl ClientStream) -> io::Result<usize> {
        let mut total = 0;
        while let Some(chunk) = self.chunks.front() {
            match stream.try_write(&chunk[self.written..]) {
                Ok(n) => {
                    total += n;
                    self.written += n;
                    self.len -= n;
                    if self.written == chunk.len() {
                        self.chunks.pop_front();
                        self.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    #[test]
    fn writes_in_order_what_the_socket_takes_and_keeps_the_rest() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            let mut unsent = Unsent::default();
            unsent.push(b"xxhello ".to_vec(), 2);
            assert_eq!(unsent.len(), 6);
            // More than a socket buffer holds.
            let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
            unsent.push(big.clone(), 0);
            let first = unsent.write_to(&ours).unwrap();
            assert!(first > 6 && first < big.len() + 6);
            assert_eq!(unsent.len(), big.len() + 6 - first);
            let reader = tokio::spawn(async move {
                let mut received = Vec::new();
                peer.read_to_end(&mut received).await.unwrap();
                received
            });
            while !unsent.is_empty() {
                ours.writable().await.unwrap();
                unsent.write_to(&ours).unwrap();
            }
            drop(ours);
            let received = reader.await.unwrap();
            assert_eq!(&received[..6], b"hello ");
            assert!(received[6..] == big[..]);
        });
    }
}
