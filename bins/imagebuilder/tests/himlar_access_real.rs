//! `grant`, `revoke` and `list-access` applied for real through the CLI on
//! the local cloud (Keystone + Glance RegionOne), with projects created for
//! the test (two of the same name in two domains, for `--domain` by name)
//! and deleted at the end, like the images (tagged with a type unique to
//! the run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod himlar_support;

use std::path::Path;

use himlar_support::{
    config_ini, delete_tagged, glance_requests, image, run, unique_type, writes, RunMark,
};
use openstack_client::glance::{GlanceClient, MemberStatus, Visibility};
use openstack_client::identity::IdentityClient;

/// What the test created in Keystone.
struct Keystone {
    domain_name: String,
    domain_id: String,
    /// Named `twin` in Default and in the test's domain: (name, id in Default, id in domain).
    twin: (String, String, String),
    /// A project only in Default.
    solo: (String, String),
    /// A project deleted during the test (shows as `__DELETED__<id>`).
    gone: (String, String),
}

async fn create_keystone(id: &IdentityClient) -> Keystone {
    let domain_name = cloud_test_support::unique("ibdom");
    let domain = id.create_domain(&domain_name).await.unwrap();
    let twin = cloud_test_support::unique("ibtwin");
    let solo = cloud_test_support::unique("ibsolo");
    let gone = cloud_test_support::unique("ibgone");
    let k = Keystone {
        twin: (
            twin.clone(),
            id.create_project(&twin, "default").await.unwrap().id,
            id.create_project(&twin, &domain.id).await.unwrap().id,
        ),
        solo: (
            solo.clone(),
            id.create_project(&solo, "default").await.unwrap().id,
        ),
        gone: (
            gone.clone(),
            id.create_project(&gone, "default").await.unwrap().id,
        ),
        domain_name,
        domain_id: domain.id,
    };
    k
}

async fn delete_keystone(id: &IdentityClient, k: &Keystone) {
    for p in [&k.twin.1, &k.twin.2, &k.solo.1, &k.gone.1] {
        if let Err(e) = id.delete_project(p).await {
            if !e.is_not_found() {
                eprintln!("clean-up: cannot delete project {p}: {e}");
            }
        }
    }
    if let Err(e) = id.delete_domain(&k.domain_id).await {
        eprintln!("clean-up: cannot delete domain {}: {e}", k.domain_id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_revoke_and_list_access_for_real() {
    let _lock = cloud_test_support::cloud_lock().await;
    let session = cloud_test_support::session().await;
    let glance = session.image(None).await.unwrap();
    let identity = session.identity();
    let ty = unique_type();
    let keystone = create_keystone(&identity).await;
    let k = std::sync::Arc::new(keystone);
    let outcome = tokio::spawn(scenario(ty.clone(), glance.clone(), k.clone())).await;
    delete_tagged(&glance, &ty).await;
    delete_keystone(&identity, &k).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn members(glance: &GlanceClient, image: &str) -> Vec<(String, MemberStatus)> {
    let mut m: Vec<_> = glance
        .list_members(image)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.member_id, m.status))
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

fn sorted(mut v: Vec<(String, MemberStatus)>) -> Vec<(String, MemberStatus)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

async fn scenario(ty: String, glance: GlanceClient, k: std::sync::Arc<Keystone>) {
    let ty = ty.as_str();
    let dir = tempfile::tempdir().unwrap();
    let d: &Path = dir.path();
    let ini = config_ini(d);
    let ini = ini.to_str().unwrap();
    // Two active shared images, a private one and a deactivated shared one:
    // only the first two are touched.
    let alpha_name = format!("GOLD Alpha {ty}");
    let beta_name = format!("GOLD Beta {ty}");
    let alpha = image(
        &glance,
        &alpha_name,
        Visibility::Shared,
        &[ty, "alpha"],
        false,
        false,
    )
    .await;
    // created_at has whole seconds: alpha is the older (images are listed
    // oldest first).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let beta = image(
        &glance,
        &beta_name,
        Visibility::Shared,
        &[ty, "beta"],
        false,
        false,
    )
    .await;
    let private = image(
        &glance,
        &format!("GOLD Private {ty}"),
        Visibility::Private,
        &[ty, "alpha"],
        false,
        false,
    )
    .await;
    let old = image(
        &glance,
        &format!("Outdated (Alpha {ty})"),
        Visibility::Shared,
        &[ty, "alpha"],
        false,
        true,
    )
    .await;
    let (solo, solo_id) = (&k.solo.0, &k.solo.1);
    let cli = Cli { dir: d, ini, ty };

    // Dry run: the plan, and no write request.
    let out = cli.no_write("grant", &["-p", solo, "--dry-run"], 0).0;
    assert_eq!(
        out,
        format!(
            "DRY-RUN: Grant access to image {alpha_name} for project {solo}\nDRY-RUN: Grant access to image {beta_name} for project {solo}\n"
        )
    );
    assert!(members(&glance, &alpha).await.is_empty());

    // Without --force and no terminal: the prompt, the empty answer aborts.
    let err = cli.no_write("grant", &["-p", solo], 0).1;
    assert!(
        err.contains(&format!(
            "Grant access to shared images matching [{ty}] (yes|no)? "
        )) && err.contains("Action aborted by user."),
        "{err}"
    );

    // Grant for real: both shared active images, member created and accepted.
    let out = cli.run("grant", &["-p", solo, "--force"], 0).0;
    assert_eq!(
        out,
        format!(
            "\nGrant access to image {alpha_name} for project {solo}\n\n\nGrant access to image {beta_name} for project {solo}\n\n"
        )
    );
    for id in [&alpha, &beta] {
        assert_eq!(
            members(&glance, id).await,
            vec![(solo_id.clone(), MemberStatus::Accepted)]
        );
    }
    for id in [&private, &old] {
        assert!(glance
            .list_members(id)
            .await
            .map(|m| m.is_empty())
            .unwrap_or(true));
    }

    // Again: nothing to do, no write.
    let out = cli
        .no_write("grant", &["-n", "alpha", "-p", solo, "--dry-run"], 0)
        .0;
    assert_eq!(
        out,
        format!("DRY-RUN: Grant access to image {alpha_name} for project {solo}: nothing to do (member status accepted)\n")
    );
    cli.no_write("grant", &["-p", solo, "--force"], 0);

    // A pending membership (shared, not yet accepted) is accepted by grant.
    let (twin, twin_default, twin_domain) = (&k.twin.0, &k.twin.1, &k.twin.2);
    glance.add_member(&beta, twin_default).await.unwrap();
    // The twin project's name is in two domains: the default --domain
    // (Dataporten, absent here) cannot tell them apart.
    let err = cli
        .no_write("grant", &["-n", "beta", "-p", twin, "--force"], 1)
        .1;
    assert!(
        err.contains(&format!(
            "several projects are named {twin} (domains Default, {dom}); give --domain",
            dom = k.domain_name
        )) || err.contains(&format!(
            "several projects are named {twin} (domains {dom}, Default); give --domain",
            dom = k.domain_name
        )),
        "{err}"
    );
    // --domain by name picks each.
    for (domain, id) in [
        ("Default", twin_default),
        (k.domain_name.as_str(), twin_domain),
    ] {
        cli.run(
            "grant",
            &["-n", "beta", "-p", twin, "--domain", domain, "--force"],
            0,
        );
        assert!(
            members(&glance, &beta)
                .await
                .contains(&(id.clone(), MemberStatus::Accepted)),
            "{domain}"
        );
    }
    assert_eq!(
        members(&glance, &beta).await,
        sorted(vec![
            (solo_id.clone(), MemberStatus::Accepted),
            (twin_default.clone(), MemberStatus::Accepted),
            (twin_domain.clone(), MemberStatus::Accepted),
        ])
    );
    // A --domain that does not exist, a project that is not in it, and a
    // project that does not exist at all.
    for (args, error) in [
        (
            vec!["-p", solo, "--domain", "nosuch-domain-x", "--force"],
            "--domain nosuch-domain-x: no such Keystone domain".to_string(),
        ),
        (
            vec!["-p", solo, "--domain", &k.domain_name, "--force"],
            format!(
                "no project named {solo} in domain {} (found in domains Default)",
                k.domain_name
            ),
        ),
        (
            vec!["-p", "no-such-project-x", "--force"],
            "Unknown project no-such-project-x".to_string(),
        ),
    ] {
        let err = cli.run("grant", &args, 1).1;
        assert!(err.contains(&error), "{args:?}: {err}");
    }

    // A project deleted in Keystone after it was granted.
    let (gone, gone_id) = (&k.gone.0, &k.gone.1);
    cli.run("grant", &["-n", "alpha", "-p", gone, "--force"], 0);
    cloud_test_support::session()
        .await
        .identity()
        .delete_project(gone_id)
        .await
        .unwrap();

    // list-access: himlarcli's layout, one block per image.
    let out = cli.no_write("list-access", &[], 0).0;
    let bar = "=".repeat(80);
    // A header per image (himlarcli's `output_header`), then `project
    // status` per member, in Glance's member order: compare them as sets.
    for name in [&alpha_name, &beta_name] {
        let header = format!("{bar}\n  {:<76}\n{bar}\n", format!("Members of {name}"));
        assert!(out.contains(&header), "{out}");
    }
    let blocks: Vec<&str> = out
        .split(&format!("{bar}\n  Members of "))
        .skip(1)
        .collect();
    assert_eq!(blocks.len(), 2, "{out}");
    let rows_of = |b: &str| -> Vec<String> {
        let mut r: Vec<String> = b.lines().skip(2).map(str::to_owned).collect();
        r.sort();
        r
    };
    let mut alpha_rows = vec![
        format!("__DELETED__{gone_id} accepted"),
        format!("{solo} accepted"),
    ];
    let mut beta_rows = vec![
        format!("{solo} accepted"),
        format!("{twin} accepted"),
        format!("{twin} accepted"),
    ];
    alpha_rows.sort();
    beta_rows.sort();
    assert!(blocks[0].starts_with(&alpha_name), "{out}");
    assert_eq!(rows_of(blocks[0]), alpha_rows, "{out}");
    assert!(blocks[1].starts_with(&beta_name), "{out}");
    assert_eq!(rows_of(blocks[1]), beta_rows, "{out}");
    // JSON: one record per member.
    let out = cli
        .run("list-access", &["-n", "alpha", "--format", "json"], 0)
        .0;
    let records: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records.len(), 2, "{out}");
    assert!(
        records.contains(&serde_json::json!({"project": solo, "status": "accepted"})),
        "{out}"
    );

    // Revoke by name (all matching images), then by id.
    let out = cli.no_write("revoke", &["-p", solo, "--dry-run"], 0).0;
    assert!(
        out.contains(&format!(
            "DRY-RUN: Revoke access to image {beta_name} for project {solo}\n"
        )),
        "{out}"
    );
    let out = cli.run("revoke", &["-p", solo, "--force"], 0).0;
    assert!(
        out.contains(&format!(
            "\nRevoke access to image {alpha_name} for project {solo}\n"
        )),
        "{out}"
    );
    assert_eq!(
        members(&glance, &alpha).await,
        vec![(gone_id.clone(), MemberStatus::Accepted)]
    );
    cli.run(
        "revoke",
        &[
            "-n",
            "beta",
            "-p",
            twin_domain,
            "--project-by-id",
            "--force",
        ],
        0,
    );
    assert_eq!(
        members(&glance, &beta).await,
        vec![(twin_default.clone(), MemberStatus::Accepted)]
    );
    // The deleted project's membership, by id (no Keystone look-up).
    cli.run("revoke", &["-p", gone_id, "--project-by-id", "--force"], 0);
    assert!(members(&glance, &alpha).await.is_empty());
}

/// The access commands of one test run: `imagebuilder <command> -c <ini>
/// -t <type> ARGS` in `dir`.
struct Cli<'a> {
    dir: &'a Path,
    ini: &'a str,
    ty: &'a str,
}

impl Cli<'_> {
    /// Run `command` with `args`, asserting it exits with `code`; returns
    /// its stdout, stderr and run mark (for [`glance_requests`]).
    fn run(&self, command: &str, args: &[&str], code: i32) -> (String, String, RunMark) {
        let full: Vec<&str> = [command, "-c", self.ini, "-t", self.ty]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let (status, out, err, pid) = run(self.dir, &full, &[]);
        assert_eq!(status, code, "{full:?}: {out}{err}");
        (out, err, pid)
    }

    /// [`Cli::run`], asserting too that the run sent Glance no write request.
    fn no_write(&self, command: &str, args: &[&str], code: i32) -> (String, String) {
        let (out, err, pid) = self.run(command, args, code);
        let requests = glance_requests(pid);
        let w = writes(&requests);
        assert!(w.is_empty(), "{command} {args:?} wrote: {w:#?}");
        (out, err)
    }
}
