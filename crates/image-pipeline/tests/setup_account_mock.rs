//! `setup-account` against a stateful fake Nova + Neutron + Keystone on
//! wiremock (`cloud_test_support::nova_mock`): the first run creates the groups, their rules,
//! the keypair (private key saved 0400) and a floating IP; the second run
//! plans nothing; partial setups are completed, not duplicated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cloud_test_support::nova_mock::{self, Fake};
use image_pipeline::account::{
    apply_setup_account, plan_setup_account, setup_account, AccountOptions, KeypairAction,
};
use image_pipeline::SshKey;
use openstack_client::{CloudConfig, Session};
use serde_json::json;

fn session(fake: &Fake) -> Session {
    let mut cfg =
        CloudConfig::password(&format!("{}/v3", fake.uri()), "demo", "pw", "demo").unwrap();
    cfg.regions = vec!["RegionOne".into()];
    cfg.http.retry_base_delay = Duration::from_millis(10);
    Session::new(cfg).unwrap()
}

fn options(dir: &std::path::Path) -> AccountOptions {
    AccountOptions {
        key_path: dir.join("ssh").join("createtestimage"),
        ..Default::default()
    }
}

fn count(ops: &[String], prefix: &str) -> usize {
    ops.iter().filter(|o| o.starts_with(prefix)).count()
}

#[tokio::test]
async fn first_run_sets_everything_up_and_the_second_plans_nothing() {
    let fake = Fake::start().await;
    let session = session(&fake);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());

    let plan = plan_setup_account(&session, &opts).await.unwrap();
    assert!(!plan.is_empty());
    assert_eq!(plan.keypair.action, KeypairAction::Create);
    assert_eq!(plan.groups.len(), 2);
    let text = plan.to_text();
    for line in [
        "create security group sshopen",
        "  add rule tcp 22 from 0.0.0.0/0",
        "create security group allopen",
        "  add rule icmp from 0.0.0.0/0",
        "  add rule tcp 1-65535 from 0.0.0.0/0",
        "  add rule udp 1-65535 from 0.0.0.0/0",
        "create keypair createtestimage",
        "allocate a floating IP from public-ext-net-01",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    // Planning wrote nothing.
    let ops = fake.ops();
    assert!(
        ops.iter()
            .all(|o| !o.contains(".create") && !o.contains(".delete")),
        "{ops:?}"
    );
    assert!(!opts.key_path.exists());

    let report = apply_setup_account(&session, &opts, &plan).await.unwrap();
    assert_eq!(report.created_groups.len(), 2);
    assert_eq!(report.added_rules.len(), 4);
    assert_eq!(report.keypair, Some(KeypairAction::Create));
    assert!(report.allocated_floating_ip.is_some());
    let text = report.to_text();
    assert!(text.contains("allocated floating IP 172.24.4."), "{text}");

    // The private key: mode 0400, and its public half is the Nova keypair.
    let mode = std::fs::metadata(&opts.key_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);
    let public = SshKey::from_file(&opts.key_path)
        .unwrap()
        .public_openssh()
        .unwrap();
    {
        let state = fake.state.lock().unwrap();
        assert_eq!(state.keypairs["createtestimage"], public);
        let names: Vec<&str> = state.groups.values().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"sshopen") && names.contains(&"allopen"));
        assert_eq!(state.fips.len(), 1);
        assert_eq!(
            state.fips.values().next().unwrap()["floating_network_id"],
            nova_mock::NET_EXT
        );
    }

    let before = fake.ops().len();
    let again = plan_setup_account(&session, &opts).await.unwrap();
    assert!(again.is_empty(), "{}", again.to_text());
    assert_eq!(again.to_text(), "nothing to do: the account is set up\n");
    assert_eq!(again.existing_floating_ips.len(), 1);
    let report = setup_account(&session, &opts).await.unwrap();
    assert_eq!(report.to_text(), "nothing to do: the account is set up\n");
    let later = &fake.ops()[before..];
    assert_eq!(count(later, "sg.create"), 0, "{later:?}");
    assert_eq!(count(later, "sgrule.create"), 0, "{later:?}");
    assert_eq!(count(later, "keypair.create"), 0, "{later:?}");
    assert_eq!(count(later, "keypair.delete"), 0, "{later:?}");
    assert_eq!(count(later, "fip.create"), 0, "{later:?}");
}

#[tokio::test]
async fn a_partial_setup_is_completed_without_duplicates() {
    let fake = Fake::start().await;
    let session = session(&fake);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    // sshopen complete (rule without a prefix = any source), allopen with ICMP only.
    fake.add_group(
        "sshopen",
        vec![json!({"id": "r1", "security_group_id": "x", "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": null,
            "remote_group_id": null})],
    );
    let allopen = fake.add_group(
        "allopen",
        vec![json!({"id": "r2", "security_group_id": "y", "direction": "ingress", "ethertype": "IPv4",
            "protocol": "icmp", "port_range_min": null, "port_range_max": null,
            "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": null})],
    );
    // A floating IP exists already; a local key exists without a Nova keypair.
    fake.add_fip("");
    let (key, public) = SshKey::generate_ed25519("mine").unwrap();
    std::fs::create_dir_all(opts.key_path.parent().unwrap()).unwrap();
    key.write_private(&opts.key_path).unwrap();

    let plan = plan_setup_account(&session, &opts).await.unwrap();
    assert_eq!(plan.groups.len(), 1, "{}", plan.to_text());
    assert_eq!(
        plan.groups[0].existing_id.as_deref(),
        Some(allopen.as_str())
    );
    let missing: Vec<String> = plan.groups[0]
        .missing_rules
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        missing,
        ["tcp 1-65535 from 0.0.0.0/0", "udp 1-65535 from 0.0.0.0/0"]
    );
    assert_eq!(plan.keypair.action, KeypairAction::ImportLocal);
    assert!(plan.floating_ip.is_none());

    apply_setup_account(&session, &opts, &plan).await.unwrap();
    assert_eq!(
        fake.state.lock().unwrap().keypairs["createtestimage"],
        public,
        "the local key was imported, not replaced"
    );
    assert!(plan_setup_account(&session, &opts)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(count(&fake.ops(), "sg.create"), 0);
    assert_eq!(count(&fake.ops(), "fip.create"), 0);
}

#[tokio::test]
async fn a_mismatched_keypair_is_recreated_and_the_old_key_file_kept() {
    let fake = Fake::start().await;
    let session = session(&fake);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let (_, other_public) = SshKey::generate_ed25519("someone else").unwrap();
    fake.add_keypair("createtestimage", &other_public);
    let (old, old_public) = SshKey::generate_ed25519("old").unwrap();
    std::fs::create_dir_all(opts.key_path.parent().unwrap()).unwrap();
    old.write_private(&opts.key_path).unwrap();

    let plan = plan_setup_account(&session, &opts).await.unwrap();
    let backup = dir.path().join("ssh").join("createtestimage.bak");
    assert_eq!(
        plan.keypair.action,
        KeypairAction::Recreate {
            backup: Some(backup.clone())
        }
    );
    apply_setup_account(&session, &opts, &plan).await.unwrap();
    let kept = SshKey::from_file(&backup)
        .unwrap()
        .public_openssh()
        .unwrap();
    assert_eq!(kept, old_public, "the user's old key file is kept");
    let new_public = SshKey::from_file(&opts.key_path)
        .unwrap()
        .public_openssh()
        .unwrap();
    assert_ne!(new_public, old_public);
    assert_eq!(
        fake.state.lock().unwrap().keypairs["createtestimage"],
        new_public
    );
    assert_eq!(
        plan_setup_account(&session, &opts)
            .await
            .unwrap()
            .keypair
            .action,
        KeypairAction::Keep
    );
}

#[tokio::test]
async fn a_failed_group_creation_names_the_group_and_the_status() {
    let fake = Fake::start().await;
    let session = session(&fake);
    let dir = tempfile::tempdir().unwrap();
    fake.fail("sg.create", 500);
    let err = setup_account(&session, &options(dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("creating security group sshopen"), "{err}");
    assert!(err.contains("500"), "{err}");
}
