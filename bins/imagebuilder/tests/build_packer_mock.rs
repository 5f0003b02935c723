//! `build --packer`, the original's way, with the real packer 1.6.6: the
//! temporary security group (TCP 22, IPv4 and IPv6) and keypair are made in
//! cloud-test-support's wiremock Nova/Neutron (api-ref shaped bodies; Keystone
//! is the real local one), `packer build -color=false --var …` runs a
//! template (the `null` builder stands in for `openstack`, which needs a
//! real Nova), the artifact comes from the manifest, and the temporary
//! resources are gone afterwards, also when packer fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use cloud_test_support::nova_mock::{self, Fake};
use image_pipeline::{BackendKind, OpenStackBackend, OpenStackBackendOptions, ResourceLedger};
use imagebuilder_core::build::{self, BuildOptions};
use imagebuilder_core::config::Dirs;
use imagebuilder_core::report::ReportPaths;

fn template(root: &std::path::Path, command: &str) -> String {
    let vars: Vec<String> = build::ORIGINAL_VARIABLES
        .iter()
        .map(|v| format!("\"{v}\": \"\""))
        .collect();
    format!(
        "{{\"variables\": {{{}}},\n\
         \"builders\": [{{\"type\": \"null\", \"communicator\": \"none\"}}],\n\
         \"provisioners\": [{{\"type\": \"shell-local\", \"inline\": [\"{command}\"]}}],\n\
         \"post-processors\": [{{\"type\": \"manifest\", \"output\": \"{{{{user `manifest_path`}}}}\"}}]}}",
        vars.join(", ")
    )
    .replace("ROOT", &root.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packer_mode_runs_packer_with_the_originals_variables_and_cleans_up() {
    // Packer must not phone home.
    std::env::set_var("CHECKPOINT_DISABLE", "1");
    let fake = Fake::start().await;
    let session = fake.session().await;
    let backend = OpenStackBackend::connect(
        session.clone(),
        OpenStackBackendOptions {
            poll_interval: Duration::from_millis(10),
            delete_timeout: Duration::from_secs(20),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    std::env::set_var("PACKER_CACHE_DIR", root.path().join("packer_cache"));
    for (name, command, ok) in [
        ("pk", "echo sg={{user `security_group`}} key={{user `ssh_keypair_name`}} net={{user `network`}} > ROOT/vars.txt", true),
        ("pkfail", "exit 4", false),
    ] {
        let tdir = root.path().join(name);
        std::fs::create_dir_all(&tdir).unwrap();
        std::fs::write(tdir.join("template"), template(root.path(), command)).unwrap();
        let o = BuildOptions {
            availability_zone: "nova".into(),
            name: name.into(),
            source_image: "src".into(),
            ssh_user: "root".into(),
            flavor: "m1.small".into(),
            network: "node-int-net-01".into(),
            provision_script: "/bin/true".into(),
            download: false,
            purge_source: false,
            packer: true,
            backend: BackendKind::Openstack,
            dirs: Dirs {
                template_dir: tdir.clone(),
                download_dir: root.path().join("dl"),
            },
            extra_vars: BTreeMap::new(),
            state_dir: root.path().join("state"),
            report: Some(ReportPaths::new(&root.path().join("log"), name, "20250101")),
            date: "20250101".into(),
            cwd: tdir,
            verbose: false,
        };
        let plan = build::plan(&o).unwrap();
        let result = imagebuilder_core::packer::apply(&plan, &session, &backend, false).await;
        let log = std::fs::read_to_string(root.path().join(format!("log/{name}-build-20250101.log"))).unwrap();
        if ok {
            let outcome = result.unwrap_or_else(|e| panic!("{e}\n{log}"));
            assert_eq!(outcome.artifact_id, "Null", "{log}");
            let vars = std::fs::read_to_string(root.path().join("vars.txt")).unwrap();
            let id = &plan.build_id;
            // The network goes to packer as its id, as the original did.
            assert_eq!(vars, format!("sg={id} key={id} net={}\n", nova_mock::NET_INT));
            let ops = fake.ops();
            assert_eq!(ops.iter().filter(|o| o.starts_with("sgrule.create")).count(), 2, "{ops:?}");
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("packer build"), "{err}");
            let report = std::fs::read_to_string(root.path().join(format!("log/{name}-report.jsonl"))).unwrap();
            assert!(report.ends_with("{\"result\":\"failed\"}\n"), "{report}");
        }
        assert!(fake.leftovers().is_empty(), "{:?}", fake.leftovers());
        assert!(ResourceLedger::open(&plan.ledger).unwrap().outstanding().unwrap().is_empty());
    }
}
