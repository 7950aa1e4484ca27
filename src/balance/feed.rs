//! Feeding an [`EndpointSet`] from outside: a tower `Discover` stream or a
//! watch channel.
//!
//! A feed is a future the caller spawns (on the runtime and with the
//! supervision it chooses), not a task the set spawns: the caller sees how
//! it ended (the stream's error, say), and nothing here needs a runtime at
//! hand or can fail for want of one. A feed holds the set weakly: it ends
//! when every clone of the set (and every service made from it) is gone.

use super::EndpointSet;
use futures_util::FutureExt;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use tokio::sync::watch;
use tower::discover::Discover;

/// At most this many changes a feed has at hand go into one version, so
/// that a stream that never pauses still gets its changes published.
const BATCH: usize = 1024;

impl EndpointSet {
    /// A future that applies the changes `discover` yields to this set
    /// (`Insert(address, weight)` adds an endpoint or changes its weight;
    /// `Remove(address)` removes it), until the stream ends (`Ok`), fails
    /// (`Err`, the endpoints staying as they were), or the set is dropped
    /// (`Ok`). Changes that arrive together are applied as one. Spawn it.
    ///
    /// Any `TryStream` of [`Change`](tower::discover::Change)s is a
    /// [`Discover`]. The value of an
    /// `Insert` is the endpoint's weight (0 counts as 1): a stream of
    /// another value per endpoint (a tower service, say, as
    /// `tower::balance` takes) maps to weights with
    /// `futures::TryStreamExt::map_ok`.
    ///
    /// ```
    /// use sinew::balance::EndpointSet;
    /// use tower::discover::Change;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let set = EndpointSet::default();
    /// let (changes, stream) = tokio::sync::mpsc::unbounded_channel();
    /// let stream = futures_util::stream::unfold(stream, |mut rx| async move {
    ///     let change = rx.recv().await?;
    ///     Some((Ok::<_, std::convert::Infallible>(change), rx))
    /// });
    /// let feed = tokio::spawn(set.feed(stream));
    ///
    /// let mut versions = set.subscribe();
    /// changes.send(Change::Insert("127.0.0.1:8080".parse().unwrap(), 1)).unwrap();
    /// versions.wait_for(|_| set.len() == 1).await.unwrap();
    /// drop(changes);
    /// assert!(feed.await.unwrap().is_ok(), "the stream ended");
    /// # }
    /// ```
    pub fn feed<D>(
        &self,
        discover: D,
    ) -> impl Future<Output = Result<(), D::Error>> + Send + 'static
    where
        D: Discover<Key = SocketAddr, Service = u32> + Send + 'static,
        D::Error: Send,
    {
        let set = self.downgrade();
        let mut gone = self.gone();
        async move {
            let mut discover = std::pin::pin!(discover);
            loop {
                let first = tokio::select! {
                    first = poll_fn(|cx| discover.as_mut().poll_discover(cx)) => first,
                    // Never sent on: only the set's end wakes this.
                    _ = gone.changed() => return Ok(()),
                };
                let mut end = None;
                let mut batch = Vec::new();
                match first {
                    Some(Ok(change)) => batch.push(change),
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                }
                while batch.len() < BATCH {
                    let next = poll_fn(|cx| discover.as_mut().poll_discover(cx)).now_or_never();
                    match next {
                        Some(Some(Ok(change))) => batch.push(change),
                        Some(Some(Err(error))) => {
                            end = Some(Err(error));
                            break;
                        }
                        Some(None) => {
                            end = Some(Ok(()));
                            break;
                        }
                        None => break,
                    }
                }
                let Some(set) = EndpointSet::upgrade(&set) else {
                    return Ok(());
                };
                set.apply(batch);
                drop(set);
                if let Some(end) = end {
                    return end;
                }
                // A stream that is always ready must still let the
                // runtime's other tasks run.
                tokio::task::consume_budget().await;
            }
        }
    }

    /// A future that keeps this set equal to the endpoints (address and
    /// weight) `endpoints` holds: the current value at once, then each new
    /// one, as [`replace`](Self::replace) does. It ends when the sender is
    /// dropped (the endpoints staying as they were) or the set is. Spawn
    /// it.
    ///
    /// ```
    /// use sinew::balance::EndpointSet;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let set = EndpointSet::default();
    /// let a = "127.0.0.1:8080".parse().unwrap();
    /// let (endpoints, rx) = tokio::sync::watch::channel(vec![(a, 1)]);
    /// tokio::spawn(set.follow(rx));
    ///
    /// let b = "127.0.0.1:8081".parse().unwrap();
    /// endpoints.send_replace(vec![(b, 1)]);
    /// let mut versions = set.subscribe();
    /// versions.wait_for(|_| set.endpoints() == [b]).await.unwrap();
    /// # }
    /// ```
    pub fn follow(
        &self,
        mut endpoints: watch::Receiver<Vec<(SocketAddr, u32)>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let set = self.downgrade();
        let mut gone = self.gone();
        async move {
            loop {
                // A copy, so that the channel's lock is not held while the
                // set changes.
                let wanted = endpoints.borrow_and_update().clone();
                let Some(set) = EndpointSet::upgrade(&set) else {
                    return;
                };
                set.replace(wanted);
                drop(set);
                tokio::select! {
                    changed = endpoints.changed() => if changed.is_err() {
                        return;
                    },
                    _ = gone.changed() => return,
                }
            }
        }
    }
}
