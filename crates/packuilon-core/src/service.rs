//! The `rabbit2packer` consumer: messages → builds, with failures kept
//! (bounded retries, then `<QUEUE>.failed`) and duplicates built once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::amqp::{
    failed_queue, header_str, header_u32, publish_confirmed, Broker, Shutdown, ATTEMPT_HEADER,
    BUILD_HEADER, LOG_HEADER, REASON_HEADER, REQUEST_HEADER,
};
use crate::compute_gate::{ComputeGate, ComputeGateSettings};
use crate::config::Config;
use crate::config::Rabbit2PackerConfig;
use crate::error::{Error, Result};
use crate::gate::{GateConfig, GateImage, GateVerdict, ImageGate, ScriptGate};
use crate::notify::{Notice, Notifier};
use crate::profile::{BuildPlan, SourceImages, TemplateMap};
use crate::record::{self, BuildEntry, BuildRecord, BuildState, Decision};
use crate::rotate::Rotator;
use crate::runner::{AuthEnv, Runner};

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
    /// Builds of one request before it is parked on `<QUEUE>.failed`.
    pub max_attempts: u32,
    /// Wait before a failed request is published again.
    pub retry_delay: Duration,
    /// The record of builds done or running (duplicates build once).
    pub record: Arc<BuildRecord>,
    /// The rotation run after a successful build (`[rename-old-images]`).
    pub rotator: Option<Arc<Rotator>>,
    /// Mail and Slack notifications of finished builds.
    pub notifier: Arc<Notifier>,
    /// The test gate every new image must pass before the rotation
    /// (`[test-gate]`); a failed image is renamed `Broken-<name>-<date>` and
    /// made private (through `rotator`), and the build counts as failed.
    pub gate: Option<Arc<dyn ImageGate>>,
    /// Whether old images are rotated after a build (`[rename-old-images]`);
    /// `rotator` may exist for the gate alone.
    pub rotate_old_images: bool,
}

impl Service {
    /// The service as a config file describes it. Reads `PACKER_AUTH_FILE`
    /// and the build record, and checks the template map and source images
    /// parse, so a broken installation fails at start rather than on the
    /// first message.
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
            max_attempts: r.max_attempts,
            retry_delay: Duration::from_secs(r.retry_delay),
            record: Arc::new(BuildRecord::load(&r.state_dir.join(record::RECORD_FILE))?),
            notifier: Arc::new(Notifier::from_config(config)),
            rotate_old_images: config.rename.is_some(),
            gate: match &config.gate {
                None => None,
                Some(g) => Some(gate_from_config(g, r)?),
            },
            rotator: if config.rename.is_some() || config.gate.is_some() {
                let admin = AuthEnv::load(&r.packer_admin_auth)?;
                Some(Arc::new(Rotator::new(
                    Rotator::session_from(&admin, None)?,
                    None,
                    config.rename.clone().unwrap_or_default(),
                )))
            } else {
                None
            },
        })
    }

    /// Consume the queue until `shutdown`: at most `thread_count` messages
    /// in flight (the prefetch), builds of the same name one after the other.
    ///
    /// Each message is acknowledged only once it is settled: built (all its
    /// templates succeeded), found to be a duplicate of a build already
    /// done (same build name and profile checksum in the record), or handed
    /// on — a failed build is published again with its attempt count in the
    /// `x-packuilon-attempt` header until `max_attempts`, then to
    /// `<QUEUE>.failed` with the reason, build name and log file names in
    /// headers; a message that is not a usable profile goes to
    /// `<QUEUE>.failed` at once. Hand-offs are confirmed by the broker before
    /// the ack. Config files that cannot be read: nack with requeue after
    /// 10 s. If the broker cannot be reached or the connection drops,
    /// running builds are let finish (their unacknowledged messages come
    /// back and are recognised in the record), then the connection is
    /// retried with a doubling delay capped at `max_backoff`.
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
        // A second channel, in confirm mode, for the hand-offs.
        let publisher = conn
            .create_channel()
            .await
            .map_err(|e| fail(broker.amqp_err("open channel")(e)))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| fail(broker.amqp_err("confirm.select")(e)))?;
        broker
            .declare(&publisher, &failed_queue(&broker.queue))
            .await
            .map_err(fail)?;
        let publisher = Arc::new(publisher);
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
                        let publisher = Arc::clone(&publisher);
                        tasks.spawn(async move { svc.handle(delivery, &locks, &publisher).await });
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

    async fn handle(&self, delivery: Delivery, locks: &BuildLocks, publisher: &Channel) {
        let what = format!("message {}", delivery.delivery_tag);
        let attempt = header_u32(&delivery.properties, ATTEMPT_HEADER)
            .unwrap_or(1)
            .max(1);
        let span = info_span!(
            "message",
            queue = %self.broker.queue,
            tag = delivery.delivery_tag,
            redelivered = delivery.redelivered,
            attempt
        );
        async {
            let settled = match self.process(&delivery, &what, attempt, locks).await {
                Disposition::Done => Ok(()),
                Disposition::Unusable(e) => {
                    error!(error = %e, "unusable message: parked on the failed queue");
                    let failure = Failure {
                        build: None,
                        attempt,
                        reason: e.to_string(),
                        logs: vec![],
                    };
                    self.park(publisher, &delivery, &failure).await
                }
                Disposition::Park { name, failure } => {
                    error!(reason = %failure.reason, "parked on the failed queue");
                    match self.park(publisher, &delivery, &failure).await {
                        Ok(()) => {
                            self.notify_failure(&failure).await;
                            self.mark_handed_off(&name, &failure)
                        }
                        Err(e) => Err(e),
                    }
                }
                Disposition::Failed { name, failure } => {
                    self.hand_off(publisher, &delivery, &failure).await.and_then(|()| {
                        self.mark_handed_off(&name, &failure)
                    })
                }
                Disposition::Requeue(e) => {
                    error!(error = %e, "cannot process now; message requeued in 10 s");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let opts = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    if let Err(e) = delivery.acker.nack(opts).await {
                        error!(error = %e, "nack failed");
                    }
                    return;
                }
            };
            match settled {
                Ok(()) => {
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        error!(error = %e, "ack failed; the message will be redelivered (and recognised)");
                    }
                }
                Err(e) => error!(
                    error = %e,
                    "cannot hand the message on; left unacknowledged, it will be redelivered"
                ),
            }
        }
        .instrument(span)
        .await;
    }

    async fn process(
        &self,
        delivery: &Delivery,
        what: &str,
        attempt: u32,
        locks: &BuildLocks,
    ) -> Disposition {
        let files = SourceImages::load(&self.images_config)
            .and_then(|i| TemplateMap::load(&self.template_map).map(|m| (i, m)));
        let (images, map) = match files {
            Ok(f) => f,
            Err(e) => return Disposition::Requeue(e),
        };
        let plan = match BuildPlan::from_message(&delivery.data, what, &images, &map) {
            Ok(plan) => plan,
            Err(
                e @ (Error::Json { .. }
                | Error::MissingField { .. }
                | Error::BadName { .. }
                | Error::NoSourceImage { .. }),
            ) => return Disposition::Unusable(e),
            Err(e) => return Disposition::Requeue(e),
        };
        let request = header_str(&delivery.properties, REQUEST_HEADER);
        let checksum = record::checksum(&delivery.data, request.as_deref());
        let lock = locks.for_name(&plan.name);
        let _guard = match lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                info!(name = %plan.name, "waiting for the running build of the same name");
                lock.lock().await
            }
        };
        match record::decide(self.record.get(&plan.name).as_ref(), &checksum, attempt) {
            Decision::Build => {}
            Decision::AlreadyBuilt => {
                info!(name = %plan.name, "duplicate: this profile was built already");
                return Disposition::Done;
            }
            Decision::AlreadyHandedOff => {
                info!(name = %plan.name, "duplicate: this attempt failed and was handed on already");
                return Disposition::Done;
            }
            Decision::Rotate(entry) => {
                info!(name = %plan.name, "built already; rename-old-images failed then: trying it again");
                return self.rotate(&plan.name, entry).await;
            }
            Decision::HandOff(entry) => {
                info!(name = %plan.name, "this attempt failed before a restart; handing it on");
                return Disposition::Failed {
                    failure: Failure {
                        build: Some(plan.name.clone()),
                        attempt: entry.attempt,
                        reason: entry.reason.unwrap_or_default(),
                        logs: entry.logs,
                    },
                    name: plan.name,
                };
            }
        }
        let mut entry = BuildEntry {
            checksum,
            attempt,
            state: BuildState::Running,
            handed_off: false,
            updated: record::now(),
            images: vec![],
            reason: None,
            logs: vec![],
        };
        if let Err(e) = self.record.set(&plan.name, entry.clone()) {
            return Disposition::Requeue(e);
        }
        info!(name = %plan.name, templates = plan.templates.len(), "building");
        let results = self.runner.run_plan(&plan).await;
        let mut reasons = Vec::new();
        for r in &results {
            match &r.outcome {
                Ok(o) => {
                    entry.logs.push(file_name(&o.log_file));
                    match o.failure_reason() {
                        None => entry.images.extend(o.image_id.clone()),
                        Some(why) => reasons.push(format!("{}: {why}", r.template.display())),
                    }
                }
                Err(e) => reasons.push(format!("{}: {e}", r.template.display())),
            }
        }
        if results.is_empty() {
            reasons.push("no template for this build name and no DEFAULT entry".into());
        }
        if reasons.is_empty() {
            if let Some(gate) = &self.gate {
                reasons = self
                    .gate_images(gate.as_ref(), &plan.name, &entry.images)
                    .await;
            }
        }
        entry.updated = record::now();
        if reasons.is_empty() {
            entry.state = BuildState::Succeeded;
            info!(name = %plan.name, images = ?entry.images, "build succeeded");
            if let Err(e) = self.record.set(&plan.name, entry.clone()) {
                error!(error = %e, "cannot record the build; a duplicate may build again");
            }
            return self.rotate(&plan.name, entry).await;
        }
        entry.state = BuildState::Failed;
        entry.reason = Some(reasons.join("; "));
        warn!(name = %plan.name, reason = ?entry.reason, "build failed");
        if let Err(e) = self.record.set(&plan.name, entry.clone()) {
            error!(error = %e, "cannot record the failed build");
        }
        Disposition::Failed {
            failure: Failure {
                build: Some(plan.name.clone()),
                attempt,
                reason: entry.reason.unwrap_or_default(),
                logs: entry.logs,
            },
            name: plan.name,
        }
    }

    /// Run the test gate on each image of a build; the reasons of those
    /// that failed (empty: all passed). An image that fails is renamed
    /// `Broken-<name>-<date>` and made private; one the gate could not
    /// test is left as built. Either way the build has failed.
    async fn gate_images(
        &self,
        gate: &dyn ImageGate,
        build: &str,
        images: &[String],
    ) -> Vec<String> {
        let mut reasons = Vec::new();
        for image in images {
            let subject = GateImage {
                id: image.clone(),
                build: build.to_string(),
            };
            let why = match gate.check(&subject).await {
                Ok(GateVerdict::Passed) => continue,
                Ok(GateVerdict::Failed(why)) => why,
                Err(e) => {
                    error!(image = %image, error = %e, "the test gate could not run; the image is left as built");
                    reasons.push(format!(
                        "image {image}: the test gate could not run (image left as built): {e}"
                    ));
                    continue;
                }
            };
            let marked = match &self.rotator {
                Some(r) => match r.mark_broken(image).await {
                    Ok(name) => {
                        info!(image = %image, name = %name, "failed image marked broken");
                        format!("renamed {name:?} and made private")
                    }
                    Err(e) => {
                        error!(image = %image, error = %e, "cannot mark the failed image broken");
                        format!("could not be renamed Broken-: {e}")
                    }
                },
                None => {
                    warn!(image = %image, "no Glance access configured: the failed image is left as built");
                    "left as built: no Glance access configured".into()
                }
            };
            reasons.push(format!(
                "image {image} failed the test gate ({marked}): {why}"
            ));
        }
        reasons
    }

    /// After a successful (and gated) build: rotate the old images when
    /// configured, then report the success. A rotation that fails parks
    /// the message on `<QUEUE>.failed` (the build itself is not redone: the
    /// record keeps it as built, and a redelivery tries the rotation again).
    async fn rotate(&self, name: &str, mut entry: BuildEntry) -> Disposition {
        let mut problems = Vec::new();
        if let Some(rotator) = self.rotator.as_ref().filter(|_| self.rotate_old_images) {
            for image in &entry.images {
                match rotator.after_build(image).await {
                    Ok(plan) => {
                        info!(image = %image, warehoused = plan.old_images.len(), "old images rotated")
                    }
                    Err(e) => {
                        error!(image = %image, error = %e, "rename-old-images failed; old images left as they were");
                        problems.push(format!(
                            "image {image} was built and passed the gate, but rename-old-images failed (old images left as they were): {e}"
                        ));
                    }
                }
            }
        }
        entry.updated = record::now();
        if problems.is_empty() {
            if entry.state != BuildState::Succeeded {
                entry.state = BuildState::Succeeded;
                entry.reason = None;
                if let Err(e) = self.record.set(name, entry.clone()) {
                    error!(error = %e, "cannot record the build");
                }
            }
            self.notifier
                .notify(&Notice {
                    build: name.to_string(),
                    images: entry.images.clone(),
                    failure: None,
                    logs: entry.logs.clone(),
                    attempts: entry.attempt,
                })
                .await;
            return Disposition::Done;
        }
        entry.state = BuildState::RotationFailed;
        entry.handed_off = false;
        entry.reason = Some(problems.join("; "));
        if let Err(e) = self.record.set(name, entry.clone()) {
            error!(error = %e, "cannot record the failed rotation");
        }
        Disposition::Park {
            failure: Failure {
                build: Some(name.to_string()),
                attempt: entry.attempt,
                reason: entry.reason.unwrap_or_default(),
                logs: entry.logs,
            },
            name: name.to_string(),
        }
    }

    /// A failed attempt: publish it again (attempt + 1) or park it.
    async fn hand_off(
        &self,
        publisher: &Channel,
        delivery: &Delivery,
        failure: &Failure,
    ) -> Result<()> {
        if failure.attempt >= self.max_attempts {
            error!(attempts = failure.attempt, reason = %failure.reason, "giving up: parked on the failed queue");
            self.park(publisher, delivery, failure).await?;
            self.notify_failure(failure).await;
            return Ok(());
        }
        let next = failure.attempt + 1;
        warn!(next_attempt = next, delay = ?self.retry_delay, "build failed; retrying");
        tokio::time::sleep(self.retry_delay).await;
        let mut headers = copied_headers(&delivery.properties);
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(next));
        publish_confirmed(
            publisher,
            &self.broker.queue,
            &delivery.data,
            properties(&delivery.properties, headers),
        )
        .await
    }

    /// Publish to `<QUEUE>.failed` with the reason and logs in headers.
    async fn park(
        &self,
        publisher: &Channel,
        delivery: &Delivery,
        failure: &Failure,
    ) -> Result<()> {
        let mut headers = copied_headers(&delivery.properties);
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(failure.attempt));
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(failure.reason.as_str())),
        );
        headers.insert(
            LOG_HEADER.into(),
            AMQPValue::LongString(LongString::from(failure.logs.join(" "))),
        );
        if let Some(b) = &failure.build {
            headers.insert(
                BUILD_HEADER.into(),
                AMQPValue::LongString(LongString::from(b.as_str())),
            );
        }
        publish_confirmed(
            publisher,
            &failed_queue(&self.broker.queue),
            &delivery.data,
            properties(&delivery.properties, headers),
        )
        .await
    }

    /// Mail the failure of a request that was parked.
    async fn notify_failure(&self, failure: &Failure) {
        self.notifier
            .notify(&Notice {
                build: failure.build.clone().unwrap_or_default(),
                images: vec![],
                failure: Some(failure.reason.clone()),
                logs: failure.logs.clone(),
                attempts: failure.attempt,
            })
            .await;
    }

    fn mark_handed_off(&self, name: &str, failure: &Failure) -> Result<()> {
        if let Some(mut e) = self.record.get(name) {
            if e.attempt == failure.attempt
                && matches!(e.state, BuildState::Failed | BuildState::RotationFailed)
            {
                e.handed_off = true;
                e.updated = record::now();
                self.record.set(name, e)?;
            }
        }
        Ok(())
    }
}

/// The gate `[test-gate]` describes: the script gate, or the compute gate
/// booting through the admin credentials (or `CLOUD`).
fn gate_from_config(g: &GateConfig, r: &Rabbit2PackerConfig) -> Result<Arc<dyn ImageGate>> {
    let admin = AuthEnv::load(&r.packer_admin_auth)?;
    match ComputeGateSettings::from_config(g, &r.state_dir, &r.log_dir) {
        Some(settings) => {
            let session = Rotator::session_from(&admin, g.cloud.as_deref())?;
            Ok(Arc::new(ComputeGate::new(session, settings)))
        }
        None => Ok(Arc::new(ScriptGate {
            script: g.script.clone().unwrap_or_default(),
            timeout: Duration::from_secs(g.timeout),
            env: admin.packer_env(),
            log_dir: Some(r.log_dir.clone()),
        })),
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn copied_headers(props: &BasicProperties) -> FieldTable {
    props.headers().clone().unwrap_or_default()
}

fn properties(original: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Some(ct) = original.content_type() {
        p = p.with_content_type(ct.clone());
    }
    p
}

/// A failed attempt, as handed on.
#[derive(Debug, Clone)]
struct Failure {
    build: Option<String>,
    attempt: u32,
    reason: String,
    logs: Vec<String>,
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
    Unusable(Error),
    /// Built, but what follows failed: straight to `<QUEUE>.failed`.
    Park {
        name: String,
        failure: Failure,
    },
    Failed {
        name: String,
        failure: Failure,
    },
    Requeue(Error),
}

struct SessionError {
    error: Error,
    connected: bool,
}
