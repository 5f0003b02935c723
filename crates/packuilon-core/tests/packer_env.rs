//! OS_* variables of the service's own environment do not reach Packer:
//! only the credentials file speaks for OpenStack. (Its own test binary,
//! because it sets a variable in this process's environment.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use packuilon_core::{AuthEnv, BuildPlan, Runner};

#[tokio::test]
async fn service_os_variables_are_replaced_by_the_credentials_file() {
    // The only test of this binary: nothing else reads the environment now.
    std::env::set_var("OS_CLOUD", "from-the-service-env");
    std::env::set_var("OS_PROJECT_ID", "service-project");
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let template = dir.path().join("t.json");
    std::fs::write(
        &template,
        format!(
            r#"{{"builders": [{{"type": "null", "communicator": "none"}}],
                "provisioners": [{{"type": "shell-local", "inline": ["env > {}", "echo 'An image was created: 42'"]}}]}}"#,
            env_file.display()
        ),
    )
    .unwrap();
    let auth = dir.path().join("openrc");
    std::fs::write(
        &auth,
        "export OS_PROJECT_ID=file-project\nexport CHECKPOINT_DISABLE=1\n",
    )
    .unwrap();
    let runner = Runner {
        packer: PathBuf::from("packer"),
        build_file_dir: dir.path().join("build"),
        log_dir: dir.path().join("logs"),
        auth: AuthEnv::load(&auth).unwrap(),
    };
    let plan = BuildPlan {
        name: "n".into(),
        pretty_name: "n".into(),
        source_image: "i".into(),
        metadata: vec![],
        templates: vec![template],
    };
    let results = runner.run_plan(&plan).await;
    assert!(results[0].outcome.as_ref().unwrap().succeeded());
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.lines().any(|l| l.starts_with("OS_CLOUD=")), "{env}");
    assert!(
        env.lines().any(|l| l == "OS_PROJECT_ID=file-project"),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == "OS_TENANT_ID=file-project"),
        "{env}"
    );
}
