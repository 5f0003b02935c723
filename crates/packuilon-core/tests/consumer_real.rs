//! `rabbit2packer` against the real RabbitMQ on 127.0.0.1:5672
//! (`scripts/rabbitmq/up.sh`) and the real Packer (null builder).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    broker, broker_on, delete_queues, get_all, get_one, profile, try_ready, unique_queue,
    wait_ready,
};
use packuilon_core::amqp::{failed_queue, header_str, header_u32};
use packuilon_core::{shutdown_signal, Broker, Service, ShutdownTrigger};

/// The image id the null-builder template reports.
const IMAGE_ID: &str = "5e7c0d2a-1b3c-4d5e-8f90-a1b2c3d4e5f6";

/// Messages ready in the service's queue (not counting unacknowledged ones).
async fn ready_count(b: &Broker) -> u32 {
    ready_count_of(b, &b.queue).await
}

/// Messages ready in `queue`, which must exist.
async fn ready_count_of(b: &Broker, queue: &str) -> u32 {
    try_ready(b, queue)
        .await
        .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
}

/// [`common::service`] with three workers, two attempts per request and
/// `packer` as Packer.
fn service(dir: &Path, queue: &str, packer: PathBuf) -> Service {
    let mut svc = common::service(dir, queue, IMAGE_ID);
    svc.thread_count = 3;
    svc.max_attempts = 2;
    svc.runner.packer = packer;
    svc
}

/// A service consuming on its own task until [`Running::stop`].
struct Running {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<packuilon_core::Result<()>>,
}

/// Run `svc` on a task of its own.
fn start(svc: &Service) -> Running {
    let (trigger, shutdown) = shutdown_signal();
    let svc = svc.clone();
    let task = tokio::spawn(async move { svc.run(shutdown).await });
    Running { trigger, task }
}

impl Running {
    /// Ask the service to stop; it must return without error.
    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// Logs in `dir/logs` whose build finished, waiting up to two minutes for
/// `want` of them (a liveness bound, not a timing assertion).
async fn wait_finished_logs(dir: &Path, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let logs: Vec<String> = std::fs::read_dir(dir.join("logs"))
            .map(|rd| {
                rd.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
                    .filter(|t| t.contains("rabbit2packer: Build finished at"))
                    .collect()
            })
            .unwrap_or_default();
        if logs.len() >= want || Instant::now() > deadline {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_profiles_give_three_real_packer_builds_all_acked() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("three");
    let svc = service(dir.path(), &queue, PathBuf::from("packer"));
    for p in ["alpha", "beta", "gamma"] {
        svc.broker.publish(&profile(p)).await.unwrap();
    }
    assert_eq!(ready_count(&svc.broker).await, 3);
    let running = start(&svc);
    let logs = wait_finished_logs(dir.path(), 3).await;
    assert_eq!(logs.len(), 3, "builds finished: {logs:?}");
    for p in ["alpha", "beta", "gamma"] {
        assert!(
            logs.iter().any(
                |l| l.contains(&format!("built sl7x-x86_64 {p} from 0b5e7c6a"))
                    && l.contains("with exit code 0")
            ),
            "{p}: {logs:?}"
        );
        assert!(dir
            .path()
            .join(format!("build/{p}-sl7x-x86_64.null.json"))
            .exists());
    }
    running.stop().await;
    // The consumer is gone: an unacknowledged message would be ready again.
    assert_eq!(ready_count(&svc.broker).await, 0, "a message was not acked");
    delete_queues(&svc.broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unbuildable_messages_are_rejected_not_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("malformed");
    let svc = service(dir.path(), &queue, PathBuf::from("packer"));
    svc.broker.publish(b"{\"system\": ").await.unwrap();
    // The failed queue exists before the service runs, as on a live broker.
    let mut no_image = profile("delta");
    no_image = String::from_utf8(no_image)
        .unwrap()
        .replace("7x", "9z")
        .into_bytes();
    svc.broker.publish(&no_image).await.unwrap();
    svc.broker.publish(&profile("epsilon")).await.unwrap();
    let running = start(&svc);
    let logs = wait_finished_logs(dir.path(), 1).await;
    assert_eq!(logs.len(), 1, "the good message was built: {logs:?}");
    running.stop().await;
    assert_eq!(
        ready_count(&svc.broker).await,
        0,
        "a rejected message came back to the queue"
    );
    let failed = failed_queue(&queue);
    assert_eq!(
        wait_ready(&svc.broker, &failed, 2).await,
        2,
        "both kept on {failed}"
    );
    // Three workers: the two rejections reach the failed queue in either
    // order, so take every parked message and match each by its content.
    let parked = get_all(&svc.broker, &failed).await;
    assert_eq!(parked.len(), 2, "both kept on {failed}");
    let reason_of = |data: &[u8]| -> String {
        let msg = parked
            .iter()
            .find(|m| m.delivery.data == data)
            .unwrap_or_else(|| panic!("{:?} not parked", String::from_utf8_lossy(data)));
        header_str(&msg.delivery.properties, "x-packuilon-reason").unwrap()
    };
    let reason = reason_of(b"{\"system\": ");
    assert!(reason.contains("invalid JSON"), "{reason}");
    let reason = reason_of(&no_image);
    assert!(
        reason.contains("no source image for sl9z-x86_64"),
        "{reason}"
    );
    let built: Vec<_> = std::fs::read_dir(dir.path().join("build"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(built, vec!["epsilon-sl7x-x86_64.null.json".to_string()]);
    delete_queues(&svc.broker).await;
}

/// A TCP forwarder to RabbitMQ whose open connections can be cut, to make
/// the broker connection drop under the consumer.
struct CuttableProxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let registry = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(handle);
            }
        });
        CuttableProxy { port, conns }
    }

    /// Close every connection made so far; returns how many there were.
    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len();
        for c in conns.drain(..) {
            c.abort();
        }
        n
    }

    fn count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_reconnects_after_the_connection_drops() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("reconnect");
    let proxy = CuttableProxy::start().await;
    let mut svc = service(dir.path(), &queue, PathBuf::from("packer"));
    svc.broker = broker_on(&queue, proxy.port);
    let direct = broker(&queue);
    let running = start(&svc);
    direct.publish(&profile("before")).await.unwrap();
    assert_eq!(wait_finished_logs(dir.path(), 1).await.len(), 1);
    assert_eq!(proxy.cut(), 1, "the consumer had one connection");
    // Liveness bound only: the consumer comes back through the proxy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.count() == 0 {
        assert!(Instant::now() < deadline, "the consumer never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    direct.publish(&profile("after")).await.unwrap();
    let logs = wait_finished_logs(dir.path(), 2).await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(logs.iter().any(|l| l.contains("built sl7x-x86_64 after")));
    running.stop().await;
    assert_eq!(ready_count(&direct).await, 0);
    delete_queues(&direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_of_the_same_name_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("samename");
    // A Packer stand-in that notices when another run is inside it.
    let packer = dir.path().join("fake-packer");
    common::write_executable(&packer, &format!(
            "#!/bin/sh\nd={d}\nif mkdir $d/inside 2>/dev/null; then sleep 1; rmdir $d/inside; else touch $d/overlap; sleep 1; fi\necho run >> $d/runs\necho 'An image was created: i-1'\n",
            d = dir.path().display()
        ));
    let svc = service(dir.path(), &queue, packer);
    assert!(svc.thread_count >= 2);
    // Same build name, two different profiles (a duplicate would build once).
    svc.broker.publish(&profile("same")).await.unwrap();
    let changed = String::from_utf8(profile("same"))
        .unwrap()
        .replace("ral-tier1", "ral-tier2");
    svc.broker.publish(changed.as_bytes()).await.unwrap();
    let running = start(&svc);
    let logs = wait_finished_logs(dir.path(), 2).await;
    running.stop().await;
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap_or_default();
    assert_eq!(runs.lines().count(), 2, "{logs:?}");
    assert!(
        !dir.path().join("overlap").exists(),
        "two builds of one name ran at once"
    );
    assert_eq!(ready_count(&svc.broker).await, 0);
    delete_queues(&svc.broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_is_retried_then_kept_on_the_failed_queue() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("retry");
    let mut svc = service(dir.path(), &queue, PathBuf::from("packer"));
    let mail = dir.path().join("sendmail");
    common::write_executable(
        &mail,
        &format!("#!/bin/sh\ncat >> {}/mail.txt\n", dir.path().display()),
    );
    svc.notifier = std::sync::Arc::new(packuilon_core::notify::Notifier {
        mail_command: vec![mail.display().to_string()],
        failure_address: Some("ops@example.org".into()),
        ..Default::default()
    });
    std::fs::write(
        dir.path().join("null.json"),
        r#"{"builders": [{"type": "null", "communicator": "none"}],
            "provisioners": [{"type": "shell-local", "inline": ["echo failing $NAME", "exit 1"]}]}"#,
    )
    .unwrap();
    assert_eq!(svc.max_attempts, 2);
    svc.broker.publish(&profile("broken")).await.unwrap();
    let running = start(&svc);
    let failed = failed_queue(&queue);
    assert_eq!(wait_ready(&svc.broker, &failed, 1).await, 1);
    running.stop().await;
    assert_eq!(ready_count(&svc.broker).await, 0, "the request is settled");
    let logs = wait_finished_logs(dir.path(), 2).await;
    assert_eq!(logs.len(), 2, "two attempts: {logs:?}");
    let msg = get_one(&svc.broker, &failed).await.unwrap();
    let p = &msg.delivery.properties;
    assert_eq!(header_u32(p, "x-packuilon-attempt"), Some(2));
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(
        header_str(p, "x-packuilon-build").as_deref(),
        Some("broken-sl7x-x86_64")
    );
    let reason = header_str(p, "x-packuilon-reason").unwrap();
    assert!(reason.contains("packer exited with code 1"), "{reason}");
    let log = header_str(p, "x-packuilon-log").unwrap();
    assert!(log.starts_with("broken-sl7x-x86_64.null.") && log.ends_with(".log"));
    assert!(dir.path().join("logs").join(&log).exists(), "{log}");
    assert_eq!(msg.delivery.data, profile("broken"));
    // One failure mail, after the last attempt (none per retry).
    let mails = std::fs::read_to_string(dir.path().join("mail.txt")).unwrap();
    assert_eq!(mails.matches("To: ops@example.org").count(), 1, "{mails}");
    assert!(mails.contains("failed after 2 attempt(s)"), "{mails}");
    // The existing queue was never redeclared with other arguments: a plain
    // durable declaration still matches it.
    assert_eq!(ready_count(&svc.broker).await, 0);
    delete_queues(&svc.broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_messages_build_once_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("dups");
    let svc = service(dir.path(), &queue, PathBuf::from("packer"));
    for p in ["one", "one", "two", "one", "two"] {
        svc.broker.publish(&profile(p)).await.unwrap();
    }
    let running = start(&svc);
    assert_eq!(wait_ready(&svc.broker, &queue, 0).await, 0);
    running.stop().await;
    let logs = wait_finished_logs(dir.path(), 2).await;
    assert_eq!(logs.len(), 2, "one build per profile: {logs:?}");
    // A new service on the same state directory still knows them.
    let again = service(dir.path(), &queue, PathBuf::from("packer"));
    again.broker.publish(&profile("one")).await.unwrap();
    // A different request id (a manual trigger) is a new request.
    let mut headers = lapin::types::FieldTable::default();
    headers.insert(
        "x-packuilon-request".into(),
        lapin::types::AMQPValue::LongString("manual-1".into()),
    );
    again
        .broker
        .publish_with_headers(&profile("two"), headers)
        .await
        .unwrap();
    let running = start(&again);
    let logs = wait_finished_logs(dir.path(), 3).await;
    assert_eq!(wait_ready(&again.broker, &queue, 0).await, 0);
    running.stop().await;
    assert_eq!(logs.len(), 3, "{logs:?}");
    let builds = std::fs::read_dir(dir.path().join("logs")).unwrap().count();
    assert_eq!(builds, 3, "profile one was not built again");
    assert_eq!(ready_count(&again.broker).await, 0);
    assert_eq!(
        ready_count_of(&again.broker, &failed_queue(&queue)).await,
        0
    );
    delete_queues(&again.broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_failing_the_test_gate_is_a_failed_build_and_one_passing_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("gate");
    let mut svc = service(dir.path(), &queue, PathBuf::from("packer"));
    svc.max_attempts = 1;
    // The gate passes the image of profile "good" only.
    let script = dir.path().join("gate.sh");
    common::write_executable(&script, &format!(
            "#!/bin/sh\necho \"$PACKUILON_BUILD $PACKUILON_IMAGE_ID\" >> {d}/gated\ncase \"$PACKUILON_BUILD\" in good-*) exit 0;; *) exit 4;; esac\n",
            d = dir.path().display()
        ));
    svc.gate = Some(std::sync::Arc::new(packuilon_core::gate::ScriptGate {
        script,
        timeout: Duration::from_secs(60),
        env: vec![],
        log_dir: None,
    }));
    svc.broker.publish(&profile("good")).await.unwrap();
    svc.broker.publish(&profile("bad")).await.unwrap();
    let running = start(&svc);
    let failed = failed_queue(&queue);
    assert_eq!(wait_ready(&svc.broker, &failed, 1).await, 1);
    assert_eq!(wait_ready(&svc.broker, &queue, 0).await, 0);
    running.stop().await;
    let gated = std::fs::read_to_string(dir.path().join("gated")).unwrap();
    assert!(
        gated.contains("good-sl7x-x86_64 5e7c0d2a-1b3c-4d5e-8f90-a1b2c3d4e5f6"),
        "{gated}"
    );
    assert!(gated.contains("bad-sl7x-x86_64 "), "{gated}");
    let msg = get_one(&svc.broker, &failed).await.unwrap();
    let reason = header_str(&msg.delivery.properties, "x-packuilon-reason").unwrap();
    assert!(
        reason.contains("test script") && reason.contains("exit status: 4"),
        "{reason}"
    );
    assert_eq!(
        header_str(&msg.delivery.properties, "x-packuilon-build").as_deref(),
        Some("bad-sl7x-x86_64")
    );
    let record = svc.record.entries();
    assert_eq!(
        record["good-sl7x-x86_64"].state,
        packuilon_core::BuildState::Succeeded
    );
    assert_eq!(
        record["bad-sl7x-x86_64"].state,
        packuilon_core::BuildState::Failed
    );
    delete_queues(&svc.broker).await;
}
