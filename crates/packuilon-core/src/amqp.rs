//! RabbitMQ: the connection settings, the confirmed publisher, the message
//! headers packuilon uses and the shutdown signal of the consumer
//! (`service.rs`).

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPAuthority, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::watch;
use tracing::info;

use crate::config::{Config, Secret};
use crate::error::{Error, Result};

/// Where the queue lives and how to log in.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (never printed).
    pub password: Secret,
    /// The durable queue builds are requested on.
    pub queue: String,
}

impl Broker {
    /// The `[global]` settings of a config file.
    pub fn from_config(config: &Config) -> Self {
        let g = &config.global;
        Broker {
            host: g.rabbit_host.clone(),
            port: g.rabbit_port,
            user: g.rabbit_user.clone(),
            password: g.rabbit_pw.clone(),
            queue: g.queue.clone(),
        }
    }

    pub(crate) fn amqp_err(&self, operation: &'static str) -> impl Fn(lapin::Error) -> Error + '_ {
        move |source| Error::Amqp {
            operation,
            queue: self.queue.clone(),
            source,
        }
    }

    /// The broker's address (vhost `/`), with the password inside but
    /// never shown by `Debug` or `Display`.
    pub fn uri(&self) -> BrokerUri {
        BrokerUri(AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: self.user.clone(),
                    password: self.password.expose().to_string(),
                },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: "/".into(),
            query: Default::default(),
        })
    }

    /// Open a connection (vhost `/`). The password goes in the AMQP
    /// handshake only.
    pub async fn connect(&self) -> Result<Connection> {
        let uri = self.uri();
        tracing::debug!(broker = %uri, "connecting");
        Connection::connect_uri(uri.0, ConnectionProperties::default())
            .await
            .map_err(self.amqp_err("connect"))
    }

    /// Open a channel on `conn` and declare the queue durable.
    pub async fn open_channel(&self, conn: &Connection) -> Result<Channel> {
        let ch = conn
            .create_channel()
            .await
            .map_err(self.amqp_err("open channel"))?;
        self.declare(&ch, &self.queue).await?;
        Ok(ch)
    }

    /// Declare `queue` durable with no arguments, as the original did: a
    /// queue that exists already is never redeclared with other arguments
    /// (RabbitMQ would refuse with PRECONDITION_FAILED).
    pub async fn declare(&self, ch: &Channel, queue: &str) -> Result<()> {
        ch.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|source| Error::Amqp {
            operation: "declare",
            queue: queue.to_string(),
            source,
        })?;
        Ok(())
    }

    /// Publish `body` persistently (delivery mode 2) to the queue through the
    /// default exchange, and wait for the broker's confirmation.
    pub async fn publish(&self, body: &[u8]) -> Result<()> {
        self.publish_with_headers(body, FieldTable::default()).await
    }

    /// [`Broker::publish`] with message headers (e.g. [`REQUEST_HEADER`]).
    pub async fn publish_with_headers(&self, body: &[u8], headers: FieldTable) -> Result<()> {
        let conn = self.connect().await?;
        let ch = self.open_channel(&conn).await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(self.amqp_err("confirm.select"))?;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let result = publish_confirmed(&ch, &self.queue, body, props).await;
        let _ = conn.close(200, "published".into()).await;
        result
    }
}

/// An AMQP URI holding the broker's password. Its `Debug` and `Display`
/// show `amqp://user:***@host:port/%2f`: lapin's own `AMQPUri` derives
/// `Debug` with the password, so it never leaves this wrapper except into
/// the connection handshake.
pub struct BrokerUri(AMQPUri);

impl std::fmt::Display for BrokerUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.0.authority;
        let vhost = if self.0.vhost == "/" {
            "%2f"
        } else {
            self.0.vhost.as_str()
        };
        write!(
            f,
            "amqp://{}:***@{}:{}/{vhost}",
            a.userinfo.username, a.host, a.port
        )
    }
}

impl std::fmt::Debug for BrokerUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BrokerUri({self})")
    }
}

/// Header: the attempt number of a build request (absent means 1).
pub const ATTEMPT_HEADER: &str = "x-packuilon-attempt";
/// Header: a producer's request id; a manual `trigger` sets a fresh one so
/// that it is never taken for a duplicate.
pub const REQUEST_HEADER: &str = "x-packuilon-request";
/// Header of a `<QUEUE>.failed` message: why the build failed.
pub const REASON_HEADER: &str = "x-packuilon-reason";
/// Header of a `<QUEUE>.failed` message: the build's log file name(s).
pub const LOG_HEADER: &str = "x-packuilon-log";
/// Header of a `<QUEUE>.failed` message: the build name.
pub const BUILD_HEADER: &str = "x-packuilon-build";

/// The queue failed requests are parked on: `<QUEUE>.failed`.
pub fn failed_queue(queue: &str) -> String {
    format!("{queue}.failed")
}

/// A string header of a message.
pub fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// A whole-number header of a message (any integer type, or a numeric string).
pub fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::ShortShortUInt(n) => Some(u32::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).trim().parse().ok(),
        _ => None,
    }
}

/// Publish on a channel in confirm mode to `queue` (default exchange) and
/// wait for the broker's acknowledgement.
pub async fn publish_confirmed(
    ch: &Channel,
    queue: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<()> {
    let err = |source| Error::Amqp {
        operation: "publish",
        queue: queue.to_string(),
        source,
    };
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .map_err(err)?
        .await
        .map_err(err)?;
    match confirm {
        Confirmation::Ack(_) => {
            info!(queue = %queue, bytes = body.len(), "message published");
            Ok(())
        }
        _ => Err(Error::NotConfirmed {
            queue: queue.to_string(),
        }),
    }
}

/// Asks a running consumer to stop; see [`shutdown_signal`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Stop taking messages; running builds finish, then the consumer returns.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// The consumer's side of a [`ShutdownTrigger`].
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown was asked for (or the trigger was dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    pub(crate) fn requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// A connected trigger and its receiver.
pub fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_uri_never_shows_the_password() {
        let broker = Broker {
            host: "mq.example".into(),
            port: 5673,
            user: "builder".into(),
            password: Secret::new("s3cr%t-pw"),
            queue: "q".into(),
        };
        let uri = broker.uri();
        assert_eq!(uri.to_string(), "amqp://builder:***@mq.example:5673/%2f");
        assert_eq!(
            format!("{uri:?}"),
            "BrokerUri(amqp://builder:***@mq.example:5673/%2f)"
        );
        assert!(!format!("{broker:?}").contains("s3cr%t-pw"));
        // The password is still what the handshake sends.
        assert_eq!(uri.0.authority.userinfo.password, "s3cr%t-pw");
    }
}
