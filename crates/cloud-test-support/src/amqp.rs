//! Taking messages off a queue of the real RabbitMQ (127.0.0.1:5672) in the
//! packuilon tests, each acknowledged so that it is gone from the broker.
//! Connecting stays with the callers (packuilon-core's `Broker`): this
//! crate does not depend on packuilon-core.

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::Channel;

/// Take one message off `queue` on the open channel `ch` and acknowledge
/// it; `None` when the queue is empty.
pub async fn take_one(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    let msg = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("basic.get on queue {queue}: {e}"));
    if let Some(m) = &msg {
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap_or_else(|e| panic!("ack of a message of queue {queue}: {e}"));
    }
    msg
}

/// Take every message off `queue` on `ch` (each acknowledged), in the
/// broker's order.
pub async fn take_all(ch: &Channel, queue: &str) -> Vec<BasicGetMessage> {
    let mut all = Vec::new();
    while let Some(m) = take_one(ch, queue).await {
        all.push(m);
    }
    all
}
