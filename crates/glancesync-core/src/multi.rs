//! Synchronising several regions in one run: every region is planned, then
//! the plans are applied side by side so that a master image several
//! regions need is uploaded to all of them at once
//! ([`RegionBackend::upload_images`]: one read of the master for the Glance
//! backend). Each region keeps its own action order, log and outcome; a
//! failing region stops only itself.
//!
//! A failed upload (the target Glance went away, a copy did not verify)
//! fails that image only: it is logged at once with its reason, the
//! actions that belong to it (deleting or renaming the image it replaces)
//! are skipped, the region's other images go on, and the region ends failed
//! with every image that did not make it and why. A rerun converges (the
//! backend removes the incomplete copies it left).

use std::collections::{BTreeSet, HashSet};

use futures::StreamExt;

use crate::apply::{planned_report, Applier};
use crate::backend::{RegionBackend, RegionRef, UploadRequest};
use crate::engine::{GlanceSync, SyncReport};
use crate::error::Result;
use crate::image::Image;
use crate::log::SyncLog;
use crate::plan::{Action, RegionPlan};

/// One region of a multi-region run and where its messages go.
#[derive(Debug)]
pub struct RegionRun {
    /// Region string as given (`Region`, `target:Region`).
    pub region: String,
    /// The region's log.
    pub log: SyncLog,
}

/// Progress of a multi-region run, for the caller's output.
#[derive(Debug, Clone, Copy)]
pub enum RunEvent<'a> {
    /// The region's sync starts (it is being planned).
    Start(&'a str),
    /// The region's sync ended, successfully or not.
    Done(&'a str, bool),
}

/// Where a region's plan stands.
struct Progress<'a> {
    applier: Applier<'a>,
    log: &'a SyncLog,
    region: &'a str,
    /// Images whose upload (or AMI fix) failed, with the reason.
    failed: Vec<(String, String)>,
}

impl Progress<'_> {
    /// Record that image `name` failed with `e` and log it.
    fn image_failed(&mut self, name: &str, e: &crate::Error) {
        let full = RegionRef::parse(self.region).full_name();
        self.log
            .error(&format!("{full}: image {name} was not synchronised: {e}"));
        self.failed.push((name.to_string(), e.to_string()));
    }
}

fn failed(region: &str, log: &SyncLog, e: &crate::Error) {
    let full = RegionRef::parse(region).full_name();
    log.error(&format!("{full}: synchronisation failed: {e}"));
}

/// Indices of the actions of `plan` that are uploads.
fn upload_indices(plan: &RegionPlan) -> Vec<usize> {
    plan.actions
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Action::Upload { .. }))
        .map(|(i, _)| i)
        .collect()
}

/// The actions following upload `i` that belong to it (delete or rename of
/// the image it replaces).
fn followups(plan: &RegionPlan, i: usize) -> Vec<usize> {
    (i + 1..plan.actions.len())
        .take_while(|&j| {
            matches!(
                plan.actions[j],
                Action::Delete { .. } | Action::RenameOld { .. }
            )
        })
        .collect()
}

impl GlanceSync {
    /// Synchronise `runs` (in order): plan each region, then apply the plans
    /// side by side, each master image needed by several regions uploaded
    /// to all of them at once. `concurrency` bounds the regions doing
    /// metadata work at the same time (`max_children` with `--parallel`,
    /// else 1); uploads of one image go to every region that needs it.
    /// With `dry_run` the plans are only shown. One result per run, in order.
    pub async fn sync_regions(
        &self,
        runs: &[RegionRun],
        dry_run: bool,
        concurrency: usize,
        events: &(dyn Fn(RunEvent<'_>) + Sync),
    ) -> Vec<Result<SyncReport>> {
        let concurrency = concurrency.max(1);
        let mut results: Vec<Option<Result<SyncReport>>> = runs.iter().map(|_| None).collect();
        let mut plans: Vec<Option<RegionPlan>> = Vec::with_capacity(runs.len());
        for (k, run) in runs.iter().enumerate() {
            events(RunEvent::Start(&run.region));
            match self.plan_region(&run.region).await {
                Ok(plan) => {
                    for w in &plan.warnings {
                        run.log.warn(w);
                    }
                    if dry_run {
                        for line in plan.dry_run_lines() {
                            run.log.info(&line);
                        }
                        results[k] = Some(Ok(planned_report(&plan)));
                        events(RunEvent::Done(&run.region, true));
                        plans.push(None);
                    } else {
                        plans.push(Some(plan));
                    }
                }
                Err(e) => {
                    failed(&run.region, &run.log, &e);
                    results[k] = Some(Err(e));
                    events(RunEvent::Done(&run.region, false));
                    plans.push(None);
                }
            }
        }

        let backend: &dyn RegionBackend = &**self.backend();
        let master = self.master_images();
        let mut live: Vec<Option<Progress<'_>>> = Vec::with_capacity(runs.len());
        for (k, run) in runs.iter().enumerate() {
            let progress = plans[k].as_ref().and_then(|plan| {
                let r = RegionRef::parse(&plan.region);
                match self.target_of_region(&r, &run.region) {
                    Ok(target) => Some(Progress {
                        applier: Applier::new(backend, target, plan, master, &run.log),
                        log: &run.log,
                        region: &run.region,
                        failed: Vec::new(),
                    }),
                    Err(e) => {
                        failed(&run.region, &run.log, &e);
                        results[k] = Some(Err(e));
                        None
                    }
                }
            });
            live.push(progress);
        }

        // Phase 1: everything before the first upload (obsolete pass, metadata).
        let outcomes: Vec<(usize, Result<()>)> = futures::stream::iter(
            live.iter_mut()
                .enumerate()
                .filter_map(|(k, p)| p.as_mut().map(|p| (k, p))),
        )
        .map(|(k, p)| async move {
            let plan = p.applier.plan();
            let first = upload_indices(plan)
                .first()
                .copied()
                .unwrap_or(plan.actions.len());
            for i in 0..first {
                if let Err(e) = p.applier.run(i).await {
                    return (k, Err(e));
                }
            }
            (k, Ok(()))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
        for (k, r) in outcomes {
            if let Err(e) = r {
                drop_region(&mut live, &mut results, k, e, events);
            }
        }

        // Phase 2: uploads, one master image at a time to every region
        // needing it; the images every region copies server-side go
        // together (the backend starts their imports at once). Kernels and
        // ramdisks go in an earlier batch than the images referring to them.
        for batch in upload_batches(backend, &live).await {
            // (image of the batch, region, action, image, master image, region ref)
            let mut jobs: Vec<(usize, usize, usize, Image, &Image, RegionRef)> = Vec::new();
            let mut bad: Vec<(usize, String, crate::Error)> = Vec::new();
            for (g, name) in batch.iter().enumerate() {
                for (k, p) in live.iter().enumerate() {
                    let Some(p) = p else { continue };
                    let plan = p.applier.plan();
                    for i in upload_indices(plan) {
                        if plan.actions[i].image_name() != name {
                            continue;
                        }
                        match p.applier.upload_request(i) {
                            Ok((image, source)) => {
                                jobs.push((g, k, i, image, source, p.applier.region.clone()));
                            }
                            Err(e) => bad.push((k, name.clone(), e)),
                        }
                    }
                }
            }
            for (k, name, e) in bad {
                match live[k].as_mut() {
                    // An upload referring to an image that failed (a kernel
                    // or ramdisk) fails with it.
                    Some(p) if !p.failed.is_empty() => {
                        jobs.retain(|j| !(j.1 == k && j.3.name == name));
                        p.image_failed(&name, &e);
                    }
                    _ => {
                        jobs.retain(|j| j.1 != k);
                        drop_region(&mut live, &mut results, k, e, events);
                    }
                }
            }
            jobs.retain(|j| live[j.1].is_some());
            if jobs.is_empty() {
                continue;
            }
            let groups: Vec<Vec<UploadRequest<'_>>> = (0..batch.len())
                .map(|g| {
                    jobs.iter()
                        .filter(|j| j.0 == g)
                        .filter_map(|(_, k, _, image, source, region)| {
                            live[*k].as_ref().map(|p| UploadRequest {
                                region,
                                target: p.applier.target(),
                                image,
                                master: source,
                            })
                        })
                        .collect()
                })
                .collect();
            let mut outcome: Vec<std::vec::IntoIter<Result<String>>> = backend
                .upload_image_groups(&groups)
                .await
                .into_iter()
                .map(Vec::into_iter)
                .collect();
            drop(groups);
            for (g, k, i, image, _, region) in jobs {
                let res = outcome
                    .get_mut(g)
                    .and_then(Iterator::next)
                    .unwrap_or_else(|| {
                        Err(crate::Error::Backend {
                            region: region.full_name(),
                            operation: "upload".into(),
                            message: "no result from the backend".into(),
                        })
                    });
                let Some(p) = live[k].as_mut() else { continue };
                let id = match res {
                    Ok(id) => id,
                    Err(e) => {
                        // This image only: what belongs to it is skipped
                        // (the image it replaces stays), the rest goes on.
                        p.image_failed(&image.name, &e);
                        continue;
                    }
                };
                p.applier.uploaded(i, &image.name, id);
                let plan = p.applier.plan();
                let mut step = Ok(());
                for j in followups(plan, i) {
                    step = p.applier.run(j).await;
                    if step.is_err() {
                        break;
                    }
                }
                if let Err(e) = step {
                    drop_region(&mut live, &mut results, k, e, events);
                }
            }
        }

        // Phase 3: what follows the uploads (kernel/ramdisk ids), then the summary.
        let outcomes: Vec<(usize, Result<SyncReport>)> = futures::stream::iter(
            live.iter_mut()
                .enumerate()
                .filter_map(|(k, p)| p.take().map(|p| (k, p))),
        )
        .map(|(k, mut p)| async move {
            let plan = p.applier.plan();
            let last = upload_indices(plan)
                .last()
                .map_or(0, |&i| i + 1 + followups(plan, i).len());
            let first = upload_indices(plan).first().copied();
            let start = if first.is_some() {
                last
            } else {
                plan.actions.len()
            };
            for i in start..plan.actions.len() {
                if let Err(e) = p.applier.run(i).await {
                    // With images already failed, the AMI fixes that refer
                    // to them fail too: record them and go on.
                    if p.failed.is_empty() {
                        failed(p.region, p.log, &e);
                        return (k, Err(e));
                    }
                    let name = plan.actions[i].image_name().to_string();
                    p.image_failed(&name, &e);
                }
            }
            let Progress {
                applier,
                log,
                region,
                failed: images,
            } = p;
            let r = applier
                .finish()
                .await
                .and_then(|rep| outcome(region, &images, rep));
            if let Err(e) = &r {
                failed(region, log, e);
            }
            (k, r)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
        for (k, r) in outcomes {
            events(RunEvent::Done(&runs[k].region, r.is_ok()));
            results[k] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Ok(SyncReport::default())))
            .collect()
    }
}

/// A region's outcome: `report`, or an error naming every image that
/// failed with its reason.
fn outcome(region: &str, failed: &[(String, String)], report: SyncReport) -> Result<SyncReport> {
    if failed.is_empty() {
        return Ok(report);
    }
    Err(crate::Error::Backend {
        region: RegionRef::parse(region).full_name(),
        operation: format!("synchronisation of {} image(s)", failed.len()),
        message: failed
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn drop_region(
    live: &mut [Option<Progress<'_>>],
    results: &mut [Option<Result<SyncReport>>],
    k: usize,
    e: crate::Error,
    events: &(dyn Fn(RunEvent<'_>) + Sync),
) {
    if let Some(p) = live[k].take() {
        failed(p.region, p.log, &e);
        events(RunEvent::Done(p.region, false));
    }
    results[k] = Some(Err(e));
}

/// The master images the live plans upload, in one order every region can
/// follow: kernels and ramdisks some upload refers to first (flagged
/// `true`), then by (size, name) (each plan is in that order already).
fn upload_order(live: &[Option<Progress<'_>>]) -> Vec<(bool, String)> {
    let mut aux: HashSet<String> = HashSet::new();
    let mut all: BTreeSet<(bool, u64, String)> = BTreeSet::new();
    let plans = live.iter().flatten().map(|p| p.applier.plan());
    for plan in plans.clone() {
        for a in &plan.actions {
            if let Action::Upload {
                image,
                aux_from_uploads,
                ..
            } = a
            {
                aux.extend(aux_from_uploads.iter().map(|r| r.image.clone()));
                for p in ["kernel_id", "ramdisk_id"] {
                    if let Some(v) = image.user_properties.get(p) {
                        aux.insert(v.to_py_str());
                    }
                }
            }
        }
    }
    for plan in plans {
        for a in &plan.actions {
            if let Action::Upload { image, size, .. } = a {
                all.insert((!aux.contains(&image.name), *size, image.name.clone()));
            }
        }
    }
    let mut seen = HashSet::new();
    all.into_iter()
        .filter(|(_, _, n)| seen.insert(n.clone()))
        .map(|(not_aux, _, n)| (!not_aux, n))
        .collect()
}

/// The uploads in batches, in [`upload_order`]: in each wave (kernels and
/// ramdisks first, then the rest), the images every region needing them
/// copies server-side form one batch, then each other image is a batch of
/// its own.
async fn upload_batches(
    backend: &dyn RegionBackend,
    live: &[Option<Progress<'_>>],
) -> Vec<Vec<String>> {
    let order = upload_order(live);
    let mut out = Vec::new();
    for aux_wave in [true, false] {
        let mut together = Vec::new();
        let mut alone = Vec::new();
        for (_, name) in order.iter().filter(|(aux, _)| *aux == aux_wave) {
            let mut server_side = true;
            for p in live.iter().flatten() {
                let plan = p.applier.plan();
                let needs = upload_indices(plan)
                    .iter()
                    .any(|&i| plan.actions[i].image_name() == name);
                if needs
                    && !backend
                        .copies_server_side(&p.applier.region, p.applier.target())
                        .await
                {
                    server_side = false;
                    break;
                }
            }
            if server_side {
                together.push(name.clone());
            } else {
                alone.push(vec![name.clone()]);
            }
        }
        if !together.is_empty() {
            out.push(together);
        }
        out.extend(alone);
    }
    out
}
