//! A server and one client wired together without sockets: commands go straight through the
//! command table to the keyspace. The command fuzzer and the micro benchmarks use it.

use std::sync::Arc;

use bytes::Bytes;

use crate::client::{Client, ClientHandle};
use crate::config::Config;
use crate::protocol::{Protocol, Reply};
use crate::server::Server;

pub struct Session {
    pub server: Server,
    client: Client,
    reply: Reply,
}

impl Default for Session {
    fn default() -> Self {
        let server = Server::new(Config::new());
        let handle = Arc::new(ClientHandle::new(
            1,
            "127.0.0.1:1".into(),
            "127.0.0.1:6379".into(),
            -1,
        ));
        let client = Client::new(handle, &server.acl);
        Session {
            server,
            client,
            reply: Reply::new(Protocol::Resp2),
        }
    }
}

impl Session {
    /// Runs one command and returns its RESP2 reply. A command that would block (BLPOP with
    /// nothing to pop) is given up at once.
    pub fn execute(&mut self, args: &[Bytes]) -> &[u8] {
        self.reply.clear();
        crate::commands::execute(&self.server, &mut self.client, &mut self.reply, args);
        if self.client.blocked.take().is_some() {
            let _gate = self.server.store.enter(false);
            let blocking = &self.server.store.notifier.blocking;
            blocking.finish(self.client.id, crate::blocking::Wake::Timeout);
        }
        self.client.close_after_reply = false;
        &self.reply.buf
    }
}
