//! The connection bookkeeping of [`super::serve`]: a cap per peer address, and a global cap that
//! never stalls the accept loop.
//!
//! At every moment a connection is on its *client's turn* (the server waits for a request head
//! or body, writes an answer the client has to read, or keeps an idle keep-alive connection) or
//! on the *server's turn* (a request has arrived whole and is being handled). When every
//! connection slot is taken, a new connection sheds the connection whose client's turn began
//! longest ago: a client that drips its request head, or has sat idle, loses its connection to
//! one that is ready to talk. Only when every connection is on the server's turn is the new one
//! refused. A peer address over its own cap is refused at once, whatever the global count.
//!
//! Nothing here waits: [`Connections::admit`] decides under one short lock and the accept loop
//! goes back to accepting.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Counters of the accept loop, shown by `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since the start.
    pub accepted: AtomicU64,
    /// Connections closed on their client's turn to make room for a new one.
    pub shed: AtomicU64,
    /// Connections refused because their peer address had `max_connections_per_peer` open.
    pub refused_per_peer: AtomicU64,
    /// Connections refused because every open connection was on the server's turn.
    pub refused_full: AtomicU64,
}

/// Why a new connection is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Its peer address already has `max_connections_per_peer` connections open.
    PerPeer,
    /// `max_connections` are open and every one is handling a request.
    Full,
}

/// The open connections of one [`super::serve`] loop.
pub(super) struct Connections {
    max_connections: usize,
    max_per_peer: usize,
    counters: Arc<ConnectionCounters>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Increases at every start of a client's turn: orders `waiting`.
    next_turn: u64,
    entries: HashMap<u64, Entry>,
    peers: HashMap<IpAddr, usize>,
    /// The connections on their client's turn, by when it began (turn -> id): the first is the
    /// one shed first.
    waiting: BTreeMap<u64, u64>,
}

struct Entry {
    peer: IpAddr,
    /// `Some(turn)` on the client's turn.
    turn: Option<u64>,
    /// Requests started on this connection; a request's body reports its own number, so a late
    /// report of an earlier request changes nothing.
    requests: u64,
    shed: Arc<Notify>,
}

impl Inner {
    fn begin_client_turn(&mut self, id: u64) {
        let turn = self.next_turn;
        self.next_turn += 1;
        if let Some(entry) = self.entries.get_mut(&id) {
            if let Some(old) = entry.turn.replace(turn) {
                self.waiting.remove(&old);
            }
            self.waiting.insert(turn, id);
        }
    }

    /// Forgets connection `id`; its peer's count goes down. `false` if it was already gone.
    fn remove(&mut self, id: u64) -> bool {
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        if let Some(turn) = entry.turn {
            self.waiting.remove(&turn);
        }
        if let Some(count) = self.peers.get_mut(&entry.peer) {
            *count -= 1;
            if *count == 0 {
                self.peers.remove(&entry.peer);
            }
        }
        true
    }

    /// Sheds the connection whose client's turn began first: it is forgotten now (its slot is
    /// free at once) and told to close.
    fn shed_oldest(&mut self) -> bool {
        let Some((_, id)) = self.waiting.pop_first() else {
            return false;
        };
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.turn = None;
            entry.shed.notify_one();
        }
        self.remove(id)
    }
}

impl Connections {
    pub(super) fn new(
        max_connections: usize,
        max_per_peer: usize,
        counters: Arc<ConnectionCounters>,
    ) -> Connections {
        Connections {
            max_connections: max_connections.max(1),
            max_per_peer: max_per_peer.max(1),
            counters,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `peer`, shedding the oldest waiting one if every slot is taken.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let peer = peer.to_canonical();
        let mut inner = self.lock();
        if inner.peers.get(&peer).copied().unwrap_or(0) >= self.max_per_peer {
            self.counters
                .refused_per_peer
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerPeer);
        }
        if inner.entries.len() >= self.max_connections {
            if !inner.shed_oldest() {
                self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Full);
            }
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let shed = Arc::new(Notify::new());
        inner.entries.insert(
            id,
            Entry {
                peer,
                turn: None,
                requests: 0,
                shed: shed.clone(),
            },
        );
        *inner.peers.entry(peer).or_default() += 1;
        inner.begin_client_turn(id);
        self.counters
            .open
            .store(inner.entries.len() as u64, Ordering::Relaxed);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            turns: Turns {
                connections: self.clone(),
                id,
            },
            shed,
        })
    }

    /// Sheds the connection whose client's turn began first (to free a file descriptor when
    /// `accept` fails for want of one). `false` if none is on its client's turn.
    pub(super) fn shed_oldest(&self) -> bool {
        let mut inner = self.lock();
        let shed = inner.shed_oldest();
        if shed {
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
            self.counters
                .open
                .store(inner.entries.len() as u64, Ordering::Relaxed);
        }
        shed
    }
}

/// An admitted connection: forgotten when dropped (the connection's task ends).
pub(super) struct Admitted {
    pub(super) turns: Turns,
    /// Notified when the connection is shed: its task drops the connection, closing it.
    pub(super) shed: Arc<Notify>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let connections = &self.turns.connections;
        let mut inner = connections.lock();
        if inner.remove(self.turns.id) {
            connections
                .counters
                .open
                .store(inner.entries.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Reports the turns of one connection (cheap to clone into its service and request bodies).
/// Reports about a connection already shed or closed change nothing.
#[derive(Clone)]
pub(super) struct Turns {
    connections: Arc<Connections>,
    id: u64,
}

impl Turns {
    /// A request head arrived: the connection stays on its client's turn until the body is in.
    /// Returns the request's number on this connection.
    pub(super) fn request_started(&self) -> u64 {
        let mut inner = self.connections.lock();
        inner.entries.get_mut(&self.id).map_or(0, |entry| {
            entry.requests += 1;
            entry.requests
        })
    }

    /// Request `request` has arrived whole (or its body is no longer read): the server's turn.
    pub(super) fn request_received(&self, request: u64) {
        let mut inner = self.connections.lock();
        let Some(entry) = inner.entries.get_mut(&self.id) else {
            return;
        };
        if entry.requests != request {
            return;
        }
        if let Some(turn) = entry.turn.take() {
            inner.waiting.remove(&turn);
        }
    }

    /// The answer is ready: the client's turn again (to read it, then to send the next request).
    pub(super) fn answered(&self) {
        self.connections.lock().begin_client_turn(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn peer(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn a_full_table_sheds_the_longest_waiting_client_and_never_a_busy_one() {
        let counters = Arc::new(ConnectionCounters::default());
        let connections = Arc::new(Connections::new(3, 10, counters.clone()));
        let a = connections.admit(peer(2)).unwrap();
        let b = connections.admit(peer(3)).unwrap();
        let c = connections.admit(peer(4)).unwrap();
        // `a` is busy with a request; `b` answered a request after `c` was admitted, so `c`
        // waits longest.
        let number = a.turns.request_started();
        a.turns.request_received(number);
        let number = b.turns.request_started();
        b.turns.request_received(number);
        b.turns.answered();
        let d = connections.admit(peer(5)).unwrap();
        assert_eq!(counters.shed.load(Ordering::Relaxed), 1);
        // `c` was told to close (a stored permit: `notified` completes at once).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(100), c.shed.notified())
                .await
                .expect("the longest-waiting connection is shed");
        });
        // Next `b`, then `d`; `a` (the server's turn) never.
        let e = connections.admit(peer(6)).unwrap();
        let f = connections.admit(peer(7)).unwrap();
        assert_eq!(counters.shed.load(Ordering::Relaxed), 3);
        assert_eq!(counters.open.load(Ordering::Relaxed), 3);
        assert_eq!(a.turns.request_started(), 2, "`a` is still open");
        assert_eq!(b.turns.request_started(), 0, "`b` was shed");
        // With every connection on the server's turn, a new one is refused.
        for admitted in [&e, &f] {
            let number = admitted.turns.request_started();
            admitted.turns.request_received(number);
        }
        assert_eq!(connections.admit(peer(8)).err(), Some(Refusal::Full));
        drop((b, c, d));
        assert_eq!(counters.open.load(Ordering::Relaxed), 3);
        drop((a, e, f));
        assert_eq!(counters.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_table_of_busy_connections_refuses_and_a_peer_over_its_cap_is_refused() {
        let counters = Arc::new(ConnectionCounters::default());
        let connections = Arc::new(Connections::new(2, 2, counters.clone()));
        let a = connections.admit(peer(2)).unwrap();
        let b = connections.admit(peer(2)).unwrap();
        assert_eq!(
            connections.admit(peer(2)).err(),
            Some(Refusal::PerPeer),
            "a third connection from one address"
        );
        for admitted in [&a, &b] {
            let number = admitted.turns.request_started();
            admitted.turns.request_received(number);
        }
        assert_eq!(connections.admit(peer(3)).err(), Some(Refusal::Full));
        // A late report about an earlier request does not take a connection off its turn.
        a.turns.answered();
        let number = a.turns.request_started();
        a.turns.request_received(number - 1);
        drop(b);
        let c = connections.admit(peer(3)).unwrap();
        assert_eq!(counters.open.load(Ordering::Relaxed), 2);
        // `a` is on its client's turn (the stale report was ignored): the next one sheds it.
        connections.admit(peer(4)).unwrap();
        assert_eq!(counters.shed.load(Ordering::Relaxed), 1);
        drop((a, c));
        assert_eq!(counters.refused_per_peer.load(Ordering::Relaxed), 1);
        assert_eq!(counters.refused_full.load(Ordering::Relaxed), 1);
    }
}
