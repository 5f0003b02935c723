//! himlarcli `image.py` commands of `imagebuilder` on the real local cloud
//! (`scripts/cloud/up.sh`): `update` with a himlarcli `config.ini` (`-c`),
//! and `--dry-run` of update, retire and purge sending no write request,
//! checked in Glance's access log (`<cloud dir>/logs/glance-r1-access.log`,
//! gunicorn's, with the user agent `imagebuilder/<version> pid/<pid>`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod himlar_support;

use std::path::Path;

use himlar_support::{
    config_ini, glance_requests, render, run, unique_type, with_tagged_cleanup, writes, Builder,
    RunMark,
};
use openstack_client::glance::{GlanceClient, ImageFilter, ImageStatus};

#[tokio::test(flavor = "multi_thread")]
async fn update_with_config_ini_then_dry_runs_send_no_write() {
    let ty = unique_type();
    with_tagged_cleanup(std::slice::from_ref(&ty), |glance| {
        scenario(ty.clone(), glance)
    })
    .await;
}

/// `imagebuilder ARGS` in `dir`, which must exit 0; (stdout, stderr, mark).
fn run_ok(dir: &Path, args: &[&str]) -> (String, String, RunMark) {
    let (code, out, err, mark) = run(dir, args, &[]);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    (out, err, mark)
}

async fn scenario(ty: String, glance: GlanceClient) {
    let ty = ty.as_str();
    let builder = Builder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ini = config_ini(d);
    let ini = ini.to_str().unwrap();
    render("update.yaml", d, &builder.url, ty);
    render("retired.yaml", d, &builder.url, ty);
    let data: Vec<u8> = (0..40_000).map(|_| rand::random::<u8>()).collect();
    let md5 = builder.publish("alpha", &data);
    let update = |extra: &[&'static str]| {
        let mut args = vec!["update", "-c", ini, "-i", "update.yaml", "-n", "alpha"];
        args.extend(extra);
        args
    };
    let retire = |how: &'static str| vec!["retire", "-c", ini, "-i", "retired.yaml", "alpha", how];

    // Dry run first: the plan, and only reads.
    let (out, _, pid) = run_ok(d, &update(&["--dry-run"]));
    assert!(
        out.contains(&format!(
            "DRY-RUN: alpha: create image 'GOLD Alpha {ty}' (private) from {}alpha-latest.raw",
            builder.url
        )),
        "{out}"
    );
    let reqs = glance_requests(pid);
    assert!(!reqs.is_empty(), "the run's requests are in the access log");
    assert!(writes(&reqs).is_empty(), "{reqs:#?}");
    assert!(glance
        .list_images(&ImageFilter::default().tag(ty))
        .await
        .unwrap()
        .is_empty());

    // The real update, credentials from config.ini.
    let (out, _, _) = run_ok(d, &update(&[]));
    assert!(out.contains("alpha: created image "), "{out}");
    let listed = glance
        .list_images(&ImageFilter::default().tag(ty).tag("alpha"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].checksum.as_deref(), Some(md5.as_str()));
    let id = listed[0].id.clone();

    // Unchanged: nothing to do.
    let (out, _, _) = run_ok(d, &update(&[]));
    assert!(
        out.contains("alpha: no new image needed: checksum match found"),
        "{out}"
    );

    // A new build, dry run: rotation planned, nothing written.
    builder.publish("alpha", &data[..30_000]);
    let (out, _, pid) = run_ok(d, &update(&["--dry-run", "--format", "json"]));
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["entries"][0]["action"], "upload");
    assert_eq!(plan["entries"][0]["replaces"]["id"], id.as_str());
    assert!(writes(&glance_requests(pid)).is_empty());

    // retire and purge dry runs.
    let (out, _, pid) = run_ok(d, &retire("--dry-run"));
    assert!(
        out.contains(&format!(
            "DRY-RUN: retire image {id} 'GOLD Alpha {ty}': rename to 'Retired (Alpha {ty})'"
        )),
        "{out}"
    );
    assert!(writes(&glance_requests(pid)).is_empty());
    assert_eq!(
        glance.get_image(&id).await.unwrap().status,
        ImageStatus::Active
    );

    // Retire for real (--force: no prompt), then list the deactivated image.
    let (out, _, _) = run_ok(d, &retire("--force"));
    assert!(
        out.contains(&format!("Retire image GOLD Alpha {ty}")),
        "{out}"
    );
    let (out, _, _) = run_ok(
        d,
        &[
            "list", "-c", ini, "-t", ty, "-v", "private", "-s", "deactive",
        ],
    );
    assert!(out.contains(&format!("{id} ")), "{out}");
    assert!(out.contains("count = 1"), "{out}");

    // Without --force and no terminal, purge asks and the empty answer aborts.
    let (_, err, pid) = run_ok(d, &["purge", "-c", ini, "-t", ty, "-v", "private"]);
    assert!(
        err.contains("Purge unused private deactive images matching [")
            && err.contains("Action aborted by user."),
        "{err}"
    );
    assert!(glance_requests(pid).is_empty());
}

#[test]
fn bad_image_set_is_one_line_per_problem_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/gold-images/bad/missing-keys.yaml");
    let ini = config_ini(dir.path());
    let (code, _, err, _) = run(
        dir.path(),
        &[
            "update",
            "-c",
            ini.to_str().unwrap(),
            "-i",
            bad.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("imagebuilder: "))
        .collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[2].ends_with("images.debian12.depricated: missing mandatory key (found 'deprecated': the format spells it 'depricated')"),
        "{err}"
    );
    for line in lines {
        assert!(
            line.starts_with(&format!("imagebuilder: {}: images.", bad.display())),
            "{line}"
        );
    }
}

#[test]
fn missing_image_set_names_the_places_searched() {
    let dir = tempfile::tempdir().unwrap();
    let ini = config_ini(dir.path());
    let (code, _, err, _) = run(
        dir.path(),
        &["update", "-c", ini.to_str().unwrap(), "-i", "uio.yaml"],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not find image config file uio.yaml (looked in: uio.yaml, config/images/uio.yaml"), "{err}");
}

#[test]
fn himlarcli_short_options_win() {
    // -v is the visibility, checked by clap before any connection.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err, _) = run(dir.path(), &["list", "-v", "everyone"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'everyone' for '-v"), "{err}");
    let (code, _, err, _) = run(dir.path(), &["grant", "-t", "gold"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-p <PROJECT>"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_update_runs_the_sets_in_order_for_real() {
    let (t1, t2) = (unique_type(), unique_type());
    with_tagged_cleanup(&[t1.clone(), t2.clone()], |glance| {
        schedule_scenario(t1, t2, glance)
    })
    .await;
}

/// The active image tagged `[ty, short]`: (id, checksum, name).
async fn active(glance: &GlanceClient, ty: &str, short: &str) -> Vec<(String, String, String)> {
    glance
        .list_images(
            &ImageFilter::default()
                .tag(ty)
                .tag(short)
                .status(ImageStatus::Active),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            (
                i.id,
                i.checksum.unwrap_or_default(),
                i.name.unwrap_or_default(),
            )
        })
        .collect()
}

async fn schedule_scenario(t1: String, t2: String, glance: GlanceClient) {
    let builder = Builder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ini = config_ini(d);
    let ini = ini.to_str().unwrap();
    let images = d.join("config/images");
    for (ty, file) in [(&t1, "first.yaml"), (&t2, "second.yaml")] {
        render("schedule.yaml", d, &builder.url, ty);
        std::fs::rename(images.join("schedule.yaml"), images.join(file)).unwrap();
    }
    let alpha: Vec<u8> = (0..20_000).map(|_| rand::random::<u8>()).collect();
    let beta: Vec<u8> = (0..20_000).map(|_| rand::random::<u8>()).collect();
    let alpha_md5 = builder.publish("alpha", &alpha);
    let beta_md5 = builder.publish("beta", &beta);

    // The schedule, a missing set in the middle: the others still run, the
    // run fails naming it.
    let sets = [
        "--set",
        "first.yaml:0",
        "--set",
        "missing.yaml:0",
        "--set",
        "second.yaml",
    ];
    let mut args = vec!["image-update", "-c", ini, "--force"];
    args.extend(sets);
    let (code, out, err, _) = run(d, &args, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("imagebuilder: missing.yaml: could not find image config file missing.yaml"),
        "{err}"
    );
    assert!(
        err.contains("imagebuilder: 1 of 3 image sets failed"),
        "{err}"
    );
    let created: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(": created image "))
        .collect();
    assert_eq!(created.len(), 4, "{out}");
    for ty in [&t1, &t2] {
        for (short, md5) in [("alpha", &alpha_md5), ("beta", &beta_md5)] {
            let a = active(&glance, ty, short).await;
            assert_eq!(a.len(), 1, "{ty} {short}");
            assert_eq!(&a[0].1, md5);
        }
    }
    let first_alpha = active(&glance, &t1, "alpha").await.remove(0).0;

    // Unchanged builds, dry run then real: no write request at all.
    for extra in [Some("--dry-run"), None] {
        let mut args = vec!["image-update", "-c", ini, "--force"];
        args.extend(["--set", "first.yaml:0", "--set", "second.yaml"]);
        args.extend(extra);
        let (out, _, pid) = run_ok(d, &args);
        let reqs = glance_requests(pid);
        assert!(!reqs.is_empty());
        assert!(writes(&reqs).is_empty(), "{extra:?}: {reqs:#?}");
        if extra.is_none() {
            assert_eq!(
                out.matches(": no new image needed: checksum match found")
                    .count(),
                4,
                "{out}"
            );
        }
    }

    // A new alpha build: rotated in both sets, in the schedule's order.
    let alpha2_md5 = builder.publish("alpha", &alpha[..15_000]);
    let mut args = vec!["image-update", "-c", ini, "--force", "--pause-scale", "0"];
    args.extend(["--set", "first.yaml", "--set", "second.yaml"]);
    let (out, _, _) = run_ok(d, &args);
    let rotated: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("alpha: created image "))
        .collect();
    assert_eq!(rotated.len(), 2, "{out}");
    assert!(
        rotated[0].contains(&format!("{first_alpha} renamed and deactivated")),
        "{out}"
    );
    for ty in [&t1, &t2] {
        let a = active(&glance, ty, "alpha").await;
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].1, alpha2_md5);
        let b = active(&glance, ty, "beta").await;
        assert_eq!(b[0].1, beta_md5);
    }
    let old = glance.get_image(&first_alpha).await.unwrap();
    assert_eq!(old.status, ImageStatus::Deactivated);
    assert_eq!(
        old.name.as_deref(),
        Some(format!("Outdated (Alpha {t1})").as_str())
    );
}
