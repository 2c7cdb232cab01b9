//! A full sync loaded straight from the master's socket (`repl-diskless-load swapdb`, or
//! `on-empty-db` on an empty replica): the RDB loads into a store of its own beside the old
//! data, which takes its place only once the whole payload loaded. A transfer that fails
//! leaves the old data as it was. While the master's history is the one the old data came
//! from, the old data is served meanwhile (`async_loading`, Redis's rule); otherwise clients
//! get -LOADING until the new data is in.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use super::replica::{Conn, took_new_data};
use crate::persist::rdb;
use crate::server::Server;
use crate::store::Store;

/// The payload as the loader thread reads it: chunks the link task passes on.
struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the transfer ended before the RDB did",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

impl Chunks {
    /// What was passed on past the RDB's end: the EOF mark, and the stream after it. Called
    /// once nothing more is sent.
    fn rest(mut self) -> Vec<u8> {
        let mut rest = self.current.to_vec();
        while let Ok(chunk) = self.rx.try_recv() {
            rest.extend_from_slice(&chunk);
        }
        rest
    }
}

pub(super) async fn run(
    server: &Arc<Server>,
    conn: &mut Conn,
    size: &str,
    replid: &str,
    offset: u64,
) -> io::Result<()> {
    let replication = &server.replication;
    let mark = size.strip_prefix("EOF:").map(|m| m.as_bytes().to_vec());
    let mut left = match mark {
        Some(_) => None,
        None => Some(size.parse::<u64>().map_err(|_| {
            io::Error::other(format!("Bad protocol from MASTER, bad bulk length: {size}"))
        })?),
    };
    replication.transfer_started(left.unwrap_or(0));
    // The same history as the data we hold: that data is an older state of what comes, and
    // may be served meanwhile.
    let asynchronous = server.store.notifier.repl.lock().replid == replid;
    let _loading = server.loading.start(left.unwrap_or(0), asynchronous);
    tracing::info!(
        "MASTER <-> REPLICA sync: Loading DB in memory{}",
        if asynchronous { " (async)" } else { "" }
    );
    let scratch = Arc::new(Store::new(server.store.dbs().len()));
    scratch.notifier.loading.store(true, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let loader = {
        let (server, scratch) = (server.clone(), scratch.clone());
        tokio::task::spawn_blocking(move || {
            let mut chunks = Chunks {
                rx,
                current: Bytes::new(),
            };
            let loaded = rdb::load(
                server.loading.counting(&mut chunks),
                &scratch,
                &server.config,
                false,
            );
            // The channel goes back with the result: what is still in it is past the RDB.
            (loaded, chunks)
        })
    };
    tokio::pin!(loader);
    let mut tx = Some(tx);
    let (loaded, chunks) = loop {
        if !conn.buf.is_empty()
            && let Some(sender) = tx.clone()
        {
            // Room in the channel first: a chunk is taken off the buffer only to be sent.
            let permit = tokio::select! {
                permit = sender.reserve() => permit,
                joined = &mut loader => break joined.map_err(io::Error::other)?,
            };
            let Ok(permit) = permit else {
                tx = None;
                continue;
            };
            let take = left.map_or(conn.buf.len(), |l| (l as usize).min(conn.buf.len()));
            permit.send(conn.buf.split_to(take).freeze());
            replication.transfer_read(take as u64);
            left = left.map(|l| l - take as u64);
            if left == Some(0) {
                // The whole payload is with the loader: the end of its input.
                tx = None;
            }
            continue;
        }
        tokio::select! {
            joined = &mut loader => break joined.map_err(io::Error::other)?,
            filled = conn.fill(), if tx.is_some() => {
                if let Err(e) = filled {
                    drop(tx.take());
                    if let Ok((Err(cut), _)) = (&mut loader).await {
                        report(server, &cut);
                    }
                    return Err(e);
                }
            }
        }
    };
    drop(tx);
    let mut rest = chunks.rest();
    let loaded = loaded.map_err(|e| {
        report(server, &e);
        io::Error::other(e)
    })?;
    if let Some(mark) = mark {
        // The payload ends with the mark; what follows it is the stream.
        while rest.len() < mark.len() {
            if conn.buf.is_empty() {
                conn.fill().await?;
            }
            rest.extend_from_slice(&conn.buf.split());
        }
        if rest[..mark.len()] != mark[..] {
            tracing::warn!("Replication stream EOF marker is broken");
            return Err(io::Error::other("the RDB's EOF mark is broken"));
        }
        rest.extend_from_slice(&conn.buf);
        conn.buf.clear();
        conn.buf.extend_from_slice(&rest[mark.len()..]);
    }
    {
        let _gate = server.store.enter(true);
        for (live, new) in server.store.dbs().iter().zip(scratch.dbs()) {
            live.swap_with(new);
        }
        server.scripts.flush_functions(server);
        server
            .scripts
            .load_libraries(server, &loaded.functions, false)
            .map_err(io::Error::other)?;
        tracing::info!(
            "Done loading RDB, keys loaded: {}, keys expired: {}.",
            loaded.keys,
            loaded.expired
        );
        took_new_data(server, replid, offset);
    }
    // The old data goes with the scratch store, off the link's thread.
    tokio::task::spawn_blocking(move || drop(scratch));
    Ok(())
}

/// A load that failed, in the words of Redis's log (tests look for them).
fn report(server: &Server, error: &str) {
    tracing::warn!(
        "Internal error in RDB reading offset {}: {error}",
        server.loading.loaded_bytes()
    );
    tracing::warn!("Failed trying to load the MASTER synchronization DB from socket");
}
