//! The cluster link against a real Redis: the local one at 127.0.0.1:6379 (every test under its
//! own channel and key prefix, so runs and tests do not hear each other), and, for the fault
//! test, a `redis-server` of its own on a free loopback port that the test kills and restarts.
//!
//! These wait on real time (this is I/O, not core logic), always by polling a condition
//! against a deadline, never by a fixed sleep standing in for one.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parlor::cluster::{self, Event, Events, LinkConfig, LinkHandle};

const LOCAL_REDIS: &str = "redis://127.0.0.1:6379/0";
const PATIENCE: Duration = Duration::from_secs(5);

/// A prefix no other run or test uses: `parlor-test-<pid>-<n>:`.
fn prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("parlor-test-{}-{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A link with the default settings, once it is up.
async fn up_link(url: &str) -> (LinkHandle, Events) {
    let (link, mut events) = cluster::spawn(LinkConfig::parse(url).unwrap());
    wait_up(&mut events).await;
    (link, events)
}

/// The next event within `PATIENCE`.
async fn next_event(events: &mut Events) -> Event {
    match tokio::time::timeout(PATIENCE, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the link ended"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

/// The next message, skipping (and refusing) up/down changes.
async fn next_message(events: &mut Events) -> (String, Bytes) {
    match next_event(events).await {
        Event::Message { channel, payload } => (channel, payload),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn wait_up(events: &mut Events) {
    match next_event(events).await {
        Event::Up => {}
        other => panic!("expected Up, got {other:?}\n(is redis-server running at {LOCAL_REDIS}?)"),
    }
}

/// Polls `condition` every few milliseconds until it holds; panics after `PATIENCE`.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A plain connection for looking at what the links did, as Redis sees it.
async fn inspect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn subscribers(con: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(con).await.unwrap();
    counts[0].1
}

#[tokio::test]
async fn messages_cross_links_intact_in_order_until_unsubscribed() {
    let p = prefix();
    let (chat, marker) = (format!("{p}chat"), format!("{p}marker"));
    let (sub, mut sub_events) = up_link(LOCAL_REDIS).await;
    let (publisher, _pub_events) = up_link(LOCAL_REDIS).await;
    assert!(sub.subscribe(chat.clone()));
    assert!(!sub.subscribe(chat.clone()), "a second subscribe to the same channel is no change");
    sub.subscribe(marker.clone());
    until("both subscriptions confirmed", || sub.stats().subscriptions == 2).await;

    let binary: Bytes = (0..=255u8).collect::<Vec<_>>().into();
    let big: Bytes = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect::<Vec<_>>().into();
    for payload in [binary, Bytes::new(), big] {
        assert!(publisher.publish(chat.clone(), payload.clone()));
        let (channel, got) = next_message(&mut sub_events).await;
        assert_eq!(channel, chat);
        assert!(got == payload, "payload of {} bytes arrived as {} bytes, or changed", payload.len(), got.len());
    }

    for i in 0..1000u32 {
        assert!(publisher.publish(chat.clone(), Bytes::copy_from_slice(&i.to_be_bytes())));
    }
    for i in 0..1000u32 {
        let (channel, got) = next_message(&mut sub_events).await;
        assert_eq!((channel.as_str(), &got[..]), (chat.as_str(), &i.to_be_bytes()[..]), "message {i}");
    }
    let stats = publisher.stats();
    assert_eq!((stats.published, stats.dropped, stats.lost, stats.refused), (1003, 0, 0, 0));
    assert_eq!(sub.stats().received, 1003);

    // Delivery stops at the call, before Redis has even heard of the unsubscribe.
    assert!(sub.unsubscribe(&chat));
    publisher.publish(chat.clone(), Bytes::from_static(b"not for you"));
    publisher.publish(marker.clone(), Bytes::from_static(b"end"));
    assert_eq!(next_message(&mut sub_events).await, (marker.clone(), Bytes::from_static(b"end")));
    let mut con = inspect(LOCAL_REDIS).await;
    until("the unsubscribe confirmed", || sub.stats().subscriptions == 1).await;
    assert_eq!(subscribers(&mut con, &chat).await, 0, "Redis still sends the channel to the link");
}

#[tokio::test]
async fn a_link_receives_only_the_channels_it_subscribed_to() {
    let p = prefix();
    let (room_a, room_b) = (format!("{p}room-a"), format!("{p}room-b"));
    let (member, mut member_events) = up_link(LOCAL_REDIS).await;
    let (bystander, mut bystander_events) = up_link(LOCAL_REDIS).await;
    let (publisher, _pub_events) = up_link(LOCAL_REDIS).await;
    member.subscribe(room_a.clone());
    until("subscribed", || member.stats().subscriptions == 1).await;

    for i in 0..10u8 {
        publisher.publish(room_b.clone(), Bytes::from(vec![i]));
        publisher.publish(room_a.clone(), Bytes::from(vec![i]));
    }
    for i in 0..10u8 {
        assert_eq!(next_message(&mut member_events).await, (room_a.clone(), Bytes::from(vec![i])));
    }
    until("all 20 published", || publisher.stats().published == 20).await;

    // Not merely filtered out on arrival: Redis does not send these channels to the links at
    // all, so a node with no member of a room costs that room's traffic nothing.
    let mut con = inspect(LOCAL_REDIS).await;
    assert_eq!(subscribers(&mut con, &room_a).await, 1);
    assert_eq!(subscribers(&mut con, &room_b).await, 0);
    assert!(member_events.try_recv().is_err(), "the member got more than room-a's ten messages");
    assert!(bystander_events.try_recv().is_err(), "the bystander got a message");
    assert_eq!((member.stats().received, bystander.stats().received), (10, 0));
    assert_eq!(bystander.stats().subscriptions, 0);
}

#[tokio::test]
async fn set_expiring_writes_a_key_with_its_ttl_and_delete_removes_it() {
    let key = format!("{}node:1", prefix());
    let (link, _events) = up_link(LOCAL_REDIS).await;
    let mut con = inspect(LOCAL_REDIS).await;

    assert!(link.set_expiring(key.clone(), Bytes::from_static(b"\x00heartbeat\xff"), 5_000));
    until("the SET done", || link.stats().stored == 1).await;
    let value: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap();
    assert_eq!(value, b"\x00heartbeat\xff");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut con).await.unwrap();
    assert!(ttl > 0 && ttl <= 5_000, "PTTL {ttl}");

    assert!(link.delete(key.clone()));
    until("the DEL done", || link.stats().stored == 2).await;
    let exists: i64 = redis::cmd("EXISTS").arg(&key).query_async(&mut con).await.unwrap();
    assert_eq!(exists, 0);
}

/// A `redis-server` of the test's own, on a loopback port, that keeps nothing on disk.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start_on(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        OwnRedis { port, child }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn wait_ready(&self) {
        let url = self.url();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(client) = redis::Client::open(url.as_str()) {
                if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING").query_async::<String>(&mut con).await.is_ok() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_survives_a_redis_restart_with_its_queue_bounded_and_its_subscriptions_back() {
    let mut redis = OwnRedis::start_on(OwnRedis::free_port());
    redis.wait_ready().await;
    let url = redis.url();
    let p = prefix();
    let chat = format!("{p}chat");

    let mut config = LinkConfig::parse(&url).unwrap();
    config.queue_commands = 64;
    let (node, mut node_events) = cluster::spawn(config);
    wait_up(&mut node_events).await;
    let (publisher, mut pub_events) = up_link(&url).await;
    node.subscribe(chat.clone());
    until("subscribed", || node.stats().subscriptions == 1).await;
    publisher.publish(chat.clone(), Bytes::from_static(b"before"));
    assert_eq!(next_message(&mut node_events).await, (chat.clone(), Bytes::from_static(b"before")));

    let killed = Instant::now();
    redis.kill();
    match next_event(&mut node_events).await {
        Event::Down { reason } => println!("down after {:?}: {reason}", killed.elapsed()),
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(!node.is_up());
    assert_eq!(node.stats().subscriptions, 0);

    // Publishing into the outage: the queue fills to its bound, and the rest is counted.
    let bound = node.queue_bound();
    assert_eq!(bound, 64);
    for i in 0..1000u32 {
        node.publish(format!("{p}outage"), Bytes::copy_from_slice(&i.to_be_bytes()));
        assert!(node.queued() <= bound, "{} queued, bound {bound}", node.queued());
    }
    let stats = node.stats();
    assert_eq!(stats.queued, bound);
    assert_eq!(stats.dropped, 1000 - bound as u64);
    assert_eq!(stats.queued_bytes, bound * (format!("{p}outage").len() + 4));

    // Stay down for a few backoff steps, then bring the server back on the same port.
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline {
        assert!(node.queued() <= bound);
        assert!(node_events.try_recv().is_err(), "more than one event during one outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let redis = OwnRedis::start_on(redis.port);
    let restarted = Instant::now();
    assert_eq!(next_event(&mut node_events).await, Event::Up, "the link did not come back");
    println!("up {:?} after the restart", restarted.elapsed());
    assert!(restarted.elapsed() < Duration::from_secs(5));
    let stats = node.stats();
    assert_eq!((stats.reconnects, stats.subscriptions), (1, 1), "resubscribed before Up: {stats:?}");
    until("the queued publishes sent", || node.stats().published == bound as u64).await;

    // Nobody subscribed again: the link did, by itself.
    while next_event(&mut pub_events).await != Event::Up {}
    publisher.publish(chat.clone(), Bytes::from_static(b"after"));
    assert_eq!(next_message(&mut node_events).await, (chat, Bytes::from_static(b"after")));
    drop(redis);
}

#[tokio::test]
async fn a_link_that_cannot_connect_reports_down_once_and_counts_what_it_cannot_queue() {
    // A port nothing listens on (bound, then released).
    let url = format!("redis://127.0.0.1:{}/0", OwnRedis::free_port());
    let mut config = LinkConfig::parse(&url).unwrap();
    config.queue_commands = 4;
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(20);
    let (link, mut events) = cluster::spawn(config);
    assert!(matches!(next_event(&mut events).await, Event::Down { .. }));
    for _ in 0..10 {
        link.publish("x".to_owned(), Bytes::from_static(b"y"));
    }
    assert_eq!((link.stats().queued, link.stats().dropped), (4, 6));
    // Many attempts later, still exactly one Down.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(events.try_recv().is_err());
    // The last handle gone, the task ends and the event queue closes.
    drop(link);
    assert_eq!(tokio::time::timeout(PATIENCE, events.recv()).await.unwrap(), None);
}

#[tokio::test]
async fn the_byte_bound_drops_what_would_overflow_it() {
    let mut config = LinkConfig::parse(&format!("redis://127.0.0.1:{}/0", OwnRedis::free_port())).unwrap();
    config.queue_bytes = 1000;
    let (link, mut events) = cluster::spawn(config);
    assert!(matches!(next_event(&mut events).await, Event::Down { .. }));
    assert!(link.publish("c".to_owned(), Bytes::from(vec![0; 600])));
    assert!(!link.publish("c".to_owned(), Bytes::from(vec![0; 600])), "1202 bytes queued, bound 1000");
    assert!(link.publish("c".to_owned(), Bytes::from(vec![0; 300])));
    let stats = link.stats();
    assert_eq!((stats.queued, stats.queued_bytes, stats.dropped), (2, 902, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_server_that_stops_answering_goes_down_on_its_ping_and_comes_back() {
    let redis = OwnRedis::start_on(OwnRedis::free_port());
    redis.wait_ready().await;
    let mut config = LinkConfig::parse(&redis.url()).unwrap();
    config.ping_every = Duration::from_millis(100);
    config.response_timeout = Duration::from_millis(200);
    let (link, mut events) = cluster::spawn(config);
    wait_up(&mut events).await;

    // The connection stays open, the server just says nothing: only the ping can tell.
    let mut con = inspect(&redis.url()).await;
    let () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL").query_async(&mut con).await.unwrap();
    let paused = Instant::now();
    match next_event(&mut events).await {
        Event::Down { reason } => println!("down {:?} into the pause: {reason}", paused.elapsed()),
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(paused.elapsed() < Duration::from_millis(1500), "noticed only when the pause ended");
    assert_eq!(next_event(&mut events).await, Event::Up);
    println!("up {:?} after the pause began", paused.elapsed());
    assert_eq!(link.stats().reconnects, 1);
}

#[tokio::test]
async fn messages_the_owner_leaves_unread_stay_within_their_byte_bound_and_the_rest_is_counted() {
    let channel = format!("{}slow", prefix());
    let mut config = LinkConfig::parse(LOCAL_REDIS).unwrap();
    config.events_bytes = 10_000;
    let (slow, mut slow_events) = cluster::spawn(config);
    wait_up(&mut slow_events).await;
    let (publisher, _pub_events) = up_link(LOCAL_REDIS).await;
    slow.subscribe(channel.clone());
    until("subscribed", || slow.stats().subscriptions == 1).await;

    let payload = Bytes::from(vec![1; 1000 - channel.len()]);
    for _ in 0..50 {
        publisher.publish(channel.clone(), payload.clone());
    }
    until("all 50 arrived or were dropped", || {
        let stats = slow.stats();
        stats.received + stats.dropped_events == 50
    })
    .await;
    let stats = slow.stats();
    assert_eq!((stats.received, stats.dropped_events, stats.events_bytes), (10, 40, 10_000));
    // Reading releases the bytes: the next message fits again.
    for _ in 0..10 {
        next_message(&mut slow_events).await;
    }
    assert_eq!(slow.stats().events_bytes, 0);
    publisher.publish(channel.clone(), payload.clone());
    assert_eq!(next_message(&mut slow_events).await, (channel, payload));
}
