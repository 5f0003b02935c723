//! RabbitMQ: the connection settings, the `rabbit2packer` consumer and the
//! publisher used by the producers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::profile::{BuildPlan, SourceImages, TemplateMap};
use crate::runner::{AuthEnv, Runner};

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

    fn amqp_err(&self, operation: &'static str) -> impl Fn(lapin::Error) -> Error + '_ {
        move |source| Error::Amqp {
            operation,
            queue: self.queue.clone(),
            source,
        }
    }

    /// Open a connection (vhost `/`). The password goes in the AMQP
    /// handshake only.
    pub async fn connect(&self) -> Result<Connection> {
        let uri = AMQPUri {
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
        };
        Connection::connect_uri(uri, ConnectionProperties::default())
            .await
            .map_err(self.amqp_err("connect"))
    }

    /// Open a channel on `conn` and declare the queue durable.
    pub async fn open_channel(&self, conn: &Connection) -> Result<Channel> {
        let ch = conn
            .create_channel()
            .await
            .map_err(self.amqp_err("open channel"))?;
        ch.queue_declare(
            self.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(self.amqp_err("declare"))?;
        Ok(ch)
    }

    /// Publish `body` persistently (delivery mode 2) to the queue through the
    /// default exchange, and wait for the broker's confirmation.
    pub async fn publish(&self, body: &[u8]) -> Result<()> {
        let conn = self.connect().await?;
        let ch = self.open_channel(&conn).await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(self.amqp_err("confirm.select"))?;
        let confirm = ch
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .map_err(self.amqp_err("publish"))?
            .await
            .map_err(self.amqp_err("publish"))?;
        let _ = conn.close(200, "published".into()).await;
        match confirm {
            Confirmation::Ack(_) => {
                info!(queue = %self.queue, bytes = body.len(), "message published");
                Ok(())
            }
            _ => Err(Error::NotConfirmed {
                queue: self.queue.clone(),
            }),
        }
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

    fn requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// A connected trigger and its receiver.
pub fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

/// Everything the `rabbit2packer` service needs.
#[derive(Debug, Clone)]
pub struct Service {
    /// The queue.
    pub broker: Broker,
    /// Concurrent builds, which is also the prefetch count.
    pub thread_count: u16,
    /// How Packer runs.
    pub runner: Runner,
    /// `PACKER_TEMPLATE_MAP`, re-read for every message.
    pub template_map: PathBuf,
    /// `IMAGES_CONFIG`, re-read for every message.
    pub images_config: PathBuf,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl Service {
    /// The service as a config file describes it. Reads `PACKER_AUTH_FILE`
    /// and checks the template map and source images parse, so a broken
    /// installation fails at start rather than on the first message.
    pub fn from_config(config: &Config) -> Result<Self> {
        let r = &config.rabbit2packer;
        TemplateMap::load(&r.packer_template_map)?;
        SourceImages::load(&r.images_config)?;
        Ok(Service {
            broker: Broker::from_config(config),
            thread_count: r.thread_count,
            runner: Runner {
                packer: r.packer_path.clone(),
                build_file_dir: r.build_file_dir.clone(),
                log_dir: r.log_dir.clone(),
                auth: AuthEnv::load(&r.packer_auth_file)?,
            },
            template_map: r.packer_template_map.clone(),
            images_config: r.images_config.clone(),
            max_backoff: Duration::from_secs(30),
        })
    }

    /// Consume the queue until `shutdown`: at most `thread_count` messages
    /// in flight (the prefetch), builds of the same name one after the other,
    /// each message acknowledged only once its builds have
    /// finished (whatever Packer's exit code, which is logged). A message
    /// that is not a usable profile is rejected without requeue. If the
    /// broker cannot be reached or the connection drops, running builds are
    /// let finish (their unacknowledged messages come back), then the
    /// connection is retried with a doubling delay capped at `max_backoff`.
    pub async fn run(&self, mut shutdown: Shutdown) -> Result<()> {
        let this = Arc::new(self.clone());
        let locks = BuildLocks::default();
        let mut delay = Duration::from_secs(1);
        loop {
            match this.session(&mut shutdown, &locks).await {
                Ok(()) => return Ok(()),
                Err(e) if e.connected => {
                    warn!(error = %e.error, "connection lost; reconnecting");
                    delay = Duration::from_secs(1);
                }
                Err(e) => warn!(error = %e.error, retry_in = ?delay, "cannot consume"),
            }
            if shutdown.requested() {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.wait() => return Ok(()),
            }
            delay = (delay * 2).min(self.max_backoff);
        }
    }

    async fn session(
        self: &Arc<Self>,
        shutdown: &mut Shutdown,
        locks: &BuildLocks,
    ) -> std::result::Result<(), SessionError> {
        let fail = |error| SessionError {
            error,
            connected: false,
        };
        let broker = &self.broker;
        let conn = broker.connect().await.map_err(fail)?;
        let ch = broker.open_channel(&conn).await.map_err(fail)?;
        ch.basic_qos(self.thread_count, BasicQosOptions::default())
            .await
            .map_err(|e| fail(broker.amqp_err("basic.qos")(e)))?;
        let mut consumer = ch
            .basic_consume(
                broker.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail(broker.amqp_err("consume")(e)))?;
        let tag = consumer.tag();
        info!(queue = %broker.queue, prefetch = self.thread_count, "consuming");
        let mut tasks = JoinSet::new();
        let lost = loop {
            tokio::select! {
                () = shutdown.wait() => break None,
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let svc = Arc::clone(self);
                        let locks = locks.clone();
                        tasks.spawn(async move { svc.handle(delivery, &locks).await });
                    }
                    Some(Err(e)) => break Some(broker.amqp_err("consume")(e)),
                    None => break Some(Error::Amqp {
                        operation: "consume",
                        queue: broker.queue.clone(),
                        source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                            lapin::ConnectionState::Closed,
                        )),
                    }),
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        error!(error = %e, "message handler panicked");
                    }
                }
            }
        };
        if lost.is_none() {
            info!(
                running = tasks.len(),
                "shutting down: no new messages, waiting for running builds"
            );
            if let Err(e) = ch.basic_cancel(tag, BasicCancelOptions::default()).await {
                warn!(error = %e, "cancelling the consumer");
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                error!(error = %e, "message handler panicked");
            }
        }
        match lost {
            None => {
                let _ = ch.close(200, "shutdown".into()).await;
                let _ = conn.close(200, "shutdown".into()).await;
                info!("stopped");
                Ok(())
            }
            Some(error) => Err(SessionError {
                error,
                connected: true,
            }),
        }
    }

    async fn handle(&self, delivery: lapin::message::Delivery, locks: &BuildLocks) {
        let what = format!("message {}", delivery.delivery_tag);
        let span = info_span!(
            "message",
            queue = %self.broker.queue,
            tag = delivery.delivery_tag,
            redelivered = delivery.redelivered
        );
        async {
            match self.process(&delivery.data, &what, locks).await {
                Disposition::Done => {
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        error!(error = %e, "ack failed; the message will be redelivered");
                    }
                }
                Disposition::Reject(e) => {
                    error!(error = %e, "unusable message rejected (not requeued)");
                    let opts = BasicRejectOptions { requeue: false };
                    if let Err(e) = delivery.acker.reject(opts).await {
                        error!(error = %e, "reject failed");
                    }
                }
                Disposition::Retry(e) => {
                    error!(error = %e, "cannot process now; message requeued in 10 s");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let opts = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    if let Err(e) = delivery.acker.nack(opts).await {
                        error!(error = %e, "nack failed");
                    }
                }
            }
        }
        .instrument(span)
        .await;
    }

    async fn process(&self, body: &[u8], what: &str, locks: &BuildLocks) -> Disposition {
        let files = SourceImages::load(&self.images_config)
            .and_then(|i| TemplateMap::load(&self.template_map).map(|m| (i, m)));
        let (images, map) = match files {
            Ok(f) => f,
            Err(e) => return Disposition::Retry(e),
        };
        let plan = match BuildPlan::from_message(body, what, &images, &map) {
            Ok(plan) => plan,
            Err(
                e @ (Error::Json { .. }
                | Error::MissingField { .. }
                | Error::BadName { .. }
                | Error::NoSourceImage { .. }),
            ) => return Disposition::Reject(e),
            Err(e) => return Disposition::Retry(e),
        };
        info!(name = %plan.name, templates = plan.templates.len(), "building");
        let lock = locks.for_name(&plan.name);
        let _guard = match lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                info!(name = %plan.name, "waiting for the running build of the same name");
                lock.lock().await
            }
        };
        let results = self.runner.run_plan(&plan).await;
        let ok = results
            .iter()
            .filter(|r| r.outcome.as_ref().is_ok_and(|o| o.succeeded()))
            .count();
        info!(name = %plan.name, succeeded = ok, total = results.len(), "builds finished");
        Disposition::Done
    }
}

/// One lock per build name: two messages for the same profile never build
/// at the same time (they would write the same build file and create two
/// images of the same name).
#[derive(Debug, Clone, Default)]
struct BuildLocks(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl BuildLocks {
    fn for_name(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds or waits for, so the map stays small.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(map.entry(name.to_string()).or_default())
    }
}

enum Disposition {
    Done,
    Reject(Error),
    Retry(Error),
}

struct SessionError {
    error: Error,
    connected: bool,
}
