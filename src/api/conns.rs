//! Connections that hold a place without using it give way to new ones.
//!
//! `--max-connections` bounds what connections cost, but a place held by an idle keep-alive
//! connection is a place a new client (a worker, say) cannot have: enough idle pollers
//! would lock everyone else out. So every connection is registered when it is accepted
//! (`register`, from the server's `on_connect`), marked busy while a request of it is in
//! flight (`mark`, the outermost middleware), and, once the connections near the cap, the
//! longest-idle ones are shut down until enough places are free again.
//!
//! A busy connection is never shut down as idle, so one peer address could hold every place
//! with requests in flight (bodies that stall, say): the server would then stop accepting,
//! and no other client would even reach `register`. Two more rules prevent that:
//!
//! - a peer's connection beyond `high` places, once idle ones have been shut down (so all
//!   of its others are busy), is shut down at once: the last places, from `high` to the
//!   cap, are kept for other addresses, and a newcomer is accepted (actix splits the cap
//!   between its worker threads and accepts while any of them has a place free, so places
//!   free on any thread will do);
//! - when a connection comes from another address and the server is past `low`, a peer
//!   holding more than half the cap has its connections beyond that half shut down, idle
//!   ones first, then those busy longest.
//!
//! Behind a reverse proxy every client has the proxy's address: the proxy then gets at most
//! `high` places while all of them are busy, and the rule on halves never acts (it needs
//! another address); shutting idle connections down is what protects clients there.
//!
//! actix offers no call that lists or closes its connections: the registry keeps a
//! duplicate of each connection's socket, its own, and shuts the connection down through it
//! (`shutdown(2)` acts on the socket, which actix then sees end; the duplicate is closed
//! only by the registry, so no descriptor actix owns is ever closed here, and no reused
//! descriptor number can be shut down by mistake).

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// The connections of one server, across its worker threads.
pub(super) struct Registry {
    /// The most connections the server accepts at once (all worker threads together).
    cap: usize,
    /// From this many connections on, idle ones are shut down.
    high: usize,
    /// How many connections are left once idle ones have been shut down.
    low: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_peer: HashMap<IpAddr, usize>,
}

struct Conn {
    /// The registry's own duplicate of the connection's socket.
    socket: TcpStream,
    peer: Option<IpAddr>,
    /// Requests of the connection in flight.
    busy: usize,
    /// When the connection was accepted or its last request ended.
    since: Instant,
}

/// A registered connection, kept in the connection's data (`HttpRequest::conn_data`): it
/// leaves the registry when actix drops the connection.
pub(super) struct Tracked {
    id: u64,
    registry: Arc<Registry>,
}

impl Registry {
    pub(super) fn new(cap: usize) -> Arc<Registry> {
        let cap = cap.max(1);
        // A place is always left free while idle connections can give theirs up, so that
        // the accept that brings them to `high` happens and shuts them down.
        let high = (cap * 9 / 10).min(cap - 1);
        let low = (cap * 8 / 10).min(high.saturating_sub(1));
        Arc::new(Registry { cap, high, low, inner: Mutex::new(Inner::default()) })
    }

    /// `HttpServer::on_connect`: registers a newly accepted connection; then, as the server
    /// nears its cap, shuts down another peer's connections beyond half the cap (from
    /// `low`) and the longest-idle ones (from `high`); and shuts this one down at once when
    /// its peer would hold more than `high` places, all of its others busy, so that the
    /// last places stay free for other addresses.
    pub(super) fn register(self: &Arc<Registry>, conn: &dyn Any, ext: &mut Extensions) {
        let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else { return };
        let Ok(socket) = stream.as_fd().try_clone_to_owned().map(TcpStream::from) else { return };
        let peer = stream.peer_addr().ok().map(|a| a.ip());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.next_id;
        inner.next_id += 1;
        inner.conns.insert(id, Conn { socket, peer, busy: 0, since: Instant::now() });
        if let Some(p) = peer {
            *inner.per_peer.entry(p).or_default() += 1;
        }
        if inner.conns.len() >= self.low {
            self.share(&mut inner, peer);
        }
        if inner.conns.len() >= self.high {
            self.shed(&mut inner, id);
        }
        if self.overfull(&inner, peer) {
            if let Some(conn) = inner.remove(id) {
                let _ = conn.socket.shutdown(Shutdown::Both);
            }
            return;
        }
        drop(inner);
        ext.insert(Tracked { id, registry: self.clone() });
    }

    /// Whether `peer` holds more than `high` places (after idle ones were shut down: its
    /// others are busy). Never with a cap so small that `high` is no place at all.
    fn overfull(&self, inner: &Inner, peer: Option<IpAddr>) -> bool {
        let held = peer.and_then(|p| inner.per_peer.get(&p)).copied().unwrap_or(0);
        self.high > 0 && held > self.high
    }

    /// Shuts down idle connections, longest-idle first, until `low` are left (or no idle
    /// one is); never `keep`, the connection just accepted.
    fn shed(&self, inner: &mut Inner, keep: u64) {
        let mut idle: Vec<(Instant, u64)> =
            inner.conns.iter().filter(|(id, c)| c.busy == 0 && **id != keep).map(|(id, c)| (c.since, *id)).collect();
        idle.sort_unstable();
        let excess = inner.conns.len().saturating_sub(self.low);
        for (_, id) in idle.into_iter().take(excess) {
            if let Some(conn) = inner.remove(id) {
                let _ = conn.socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Shuts down connections of any other peer than `newcomer`'s holding more than half the
    /// cap, idle ones first, then the longest-held busy ones, until it holds half: a peer
    /// that keeps requests in flight on most places does not keep other addresses waiting.
    /// A peer's own new connections never cut its others short (behind a reverse proxy all
    /// clients are one peer).
    fn share(&self, inner: &mut Inner, newcomer: Option<IpAddr>) {
        let half = self.cap / 2;
        let hogs: Vec<(IpAddr, usize)> = inner
            .per_peer
            .iter()
            .filter(|(p, n)| **n > half && Some(**p) != newcomer)
            .map(|(p, n)| (*p, *n - half))
            .collect();
        for (hog, excess) in hogs {
            let mut held: Vec<(usize, Instant, u64)> = inner
                .conns
                .iter()
                .filter(|(_, c)| c.peer == Some(hog))
                .map(|(id, c)| (c.busy.min(1), c.since, *id))
                .collect();
            held.sort_unstable();
            for (_, _, id) in held.into_iter().take(excess) {
                if let Some(conn) = inner.remove(id) {
                    let _ = conn.socket.shutdown(Shutdown::Both);
                }
            }
        }
    }

    fn with(&self, id: u64, f: impl FnOnce(&mut Conn)) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = inner.conns.get_mut(&id) {
            f(conn);
        }
    }
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(p) = conn.peer {
            if let Some(n) = self.per_peer.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&p);
                }
            }
        }
        Some(conn)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.remove(self.id);
    }
}

/// The outermost middleware: the request's connection is busy until its answer is ready,
/// and idle from then on (an idle connection may be shut down to free its place).
pub(super) async fn mark(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Marks the connection idle again however the request ends, dropped futures included.
    struct Busy(Option<(u64, Arc<Registry>)>);
    impl Drop for Busy {
        fn drop(&mut self) {
            if let Some((id, registry)) = &self.0 {
                registry.with(*id, |c| {
                    c.busy -= 1;
                    c.since = Instant::now();
                });
            }
        }
    }
    let busy = Busy(req.conn_data::<Tracked>().map(|t| {
        t.registry.with(t.id, |c| c.busy += 1);
        (t.id, t.registry.clone())
    }));
    let res = next.call(req).await;
    drop(busy);
    res
}
