use super::*;

const FIXTURE: &str = "[main]\nmaster_region = Valladolid\n[master]\ncredential = user,ZmFrZXBhc3N3b3JkLG9mY291cnNl,\\\n  http://server:4730/v2.0,tenant1\nmetadata_set = nid, type\n[other]\ncredential = user2,ZmFrZXBhc3N3b3JkLG9mY291cnNl,\\\n  http://server2:4730/v2.0,tenant2\nignore_region = Region2\nmetadata_set = type\nmetadata_condition = image.is_public and\\\n 'type' in image.user_properties and image.user_properties['type']\\\n  == 'baseimage'\n";

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str, overrides: &[&str], env: &dyn Env) -> Result<GlanceSyncConfig> {
    GlanceSyncConfig::load(
        &ConfigSource::Text {
            name: "test.conf".into(),
            text: text.into(),
        },
        &LoadOptions {
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            require_credentials: true,
        },
        env,
    )
}

#[test]
fn reads_fixture_config() {
    let c = load(FIXTURE, &[], &no_env).unwrap();
    assert_eq!(c.master_region.as_deref(), Some("Valladolid"));
    let m = c.master();
    assert_eq!(m.user.as_deref(), Some("user"));
    assert_eq!(
        m.password.as_ref().unwrap().expose(),
        "fakepassword,ofcourse"
    );
    assert_eq!(m.keystone_url.as_deref(), Some("http://server:4730/v2.0"));
    assert_eq!(m.tenant.as_deref(), Some("tenant1"));
    assert_eq!(
        m.metadata_set.iter().collect::<Vec<_>>(),
        vec!["nid", "type"]
    );
    let o = c.target("other").unwrap();
    assert!(o.metadata_condition.is_some());
    assert!(
        o.ignore_regions.is_empty(),
        "ignore_region (typo) must be ignored"
    );
    assert!(o.only_tenant_images && o.support_obsolete_images && !o.use_keystone_v3);
    assert_eq!(o.list_images_timeout, 30);
    assert_eq!(o.offline_tenant_id(), "tenant2id");
    assert_eq!(c.max_children, 1);
    assert!(c.images_dir.is_none());
    assert!(!format!("{c:?}").contains("fakepassword"));
}

#[test]
fn overrides_and_defaults() {
    let c = load(
        FIXTURE,
        &[
            "main.max_children=3",
            "only_tenant_images=False",
            "other.metadata_condition=image.name == 'x'",
            "forcesyncs = None",
        ],
        &no_env,
    )
    .unwrap();
    assert_eq!(c.max_children, 3);
    assert!(!c.master().only_tenant_images);
    assert!(c
        .target("other")
        .unwrap()
        .metadata_condition
        .as_ref()
        .unwrap()
        .source()
        .contains("'x'"));
    assert_eq!(
        c.master().forcesyncs.iter().collect::<Vec<_>>(),
        vec!["None"]
    );
    let e = load(FIXTURE, &["nosuch.key=1"], &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nosuch"), "{e}");
    let e = load(FIXTURE, &["novalue"], &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("key=value"), "{e}");
    // A password given on the command line never comes back in an error.
    for arg in [
        "nosuch.password=hunter2",
        "nosuch.credential=u,aHVudGVyMg==,http://k,t",
        "a.b.password=hunter2",
    ] {
        let e = load(FIXTURE, &[arg], &no_env).unwrap_err().to_string();
        assert!(
            !e.contains("hunter2") && !e.contains("aHVudGVyMg") && e.contains("=***"),
            "{e}"
        );
    }
}

#[test]
fn plain_credentials_and_env_fallback() {
    let env = |k: &str| match k {
        "OS_USERNAME" => Some("envuser".to_string()),
        "OS_PASSWORD" => Some("envpw".to_string()),
        "OS_AUTH_URL" => Some("http://k:5000/v3".to_string()),
        "OS_TENANT_NAME" => Some("envtenant".to_string()),
        "OS_REGION_NAME" => Some("RegionOne".to_string()),
        _ => None,
    };
    let c = load("[master]\nuser = u\n", &[], &env).unwrap();
    assert_eq!(c.master_region.as_deref(), Some("RegionOne"));
    assert_eq!(c.master().user.as_deref(), Some("u"));
    assert_eq!(c.master().password.as_ref().unwrap().expose(), "envpw");
    let c = load(
        "[main]\nmaster_region=R\n[t]\nuser=a\npassword=p\nkeystone_url=http://x\ntenant=tt\n",
        &[],
        &env,
    )
    .unwrap();
    assert_eq!(
        c.target("t").unwrap().password.as_ref().unwrap().expose(),
        "p"
    );
    let e = load("[main]\nmaster_region=R\n", &[], &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("OS_USERNAME"), "{e}");
}

#[test]
fn errors_name_option() {
    let e = load("[master]\ncredential = a,b\n", &[], &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.conf:2") && e.contains("credential"), "{e}");
    let e = load(&format!("{FIXTURE}[x]\nmetadata_set = a\n"), &[], &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[x]") && e.contains("credential parameter is mandatory"),
        "{e}"
    );
    let e = load(
        &format!("{FIXTURE}only_tenant_images = perhaps\n"),
        &[],
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("[other] only_tenant_images") && e.contains("test.conf:15"),
        "{e}"
    );
    let e = load(
        &format!("{FIXTURE}[y]\ncredential=a,cA==,c,d\nmetadata_condition = len(image.name)\n"),
        &[],
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("metadata_condition") && e.contains("len()") && e.contains("test.conf:17"),
        "{e}"
    );
    let e = load("[main]\nmax_children = x\n", &[], &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_children"), "{e}");
    let e = load(&format!("{FIXTURE}transfer = fast\n"), &[], &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[other] transfer") && e.contains("glance-download"),
        "{e}"
    );
}

#[test]
fn transfer_per_target() {
    let c = load(
        &format!("{FIXTURE}transfer = glance-download\n"),
        &["master.transfer=stream"],
        &no_env,
    )
    .unwrap();
    assert_eq!(c.master().transfer, Transfer::Stream);
    assert_eq!(
        c.target("other").unwrap().transfer,
        Transfer::GlanceDownload
    );
    let c = load(FIXTURE, &[], &no_env).unwrap();
    assert_eq!(c.master().transfer, Transfer::Auto);
}

#[test]
fn max_concurrent_imports_per_target() {
    let c = load(
        &format!("{FIXTURE}max_concurrent_imports = 4\n"),
        &["master.max_concurrent_imports=1"],
        &no_env,
    )
    .unwrap();
    assert_eq!(c.master().max_concurrent_imports, 1);
    assert_eq!(c.target("other").unwrap().max_concurrent_imports, 4);
    let c = load(FIXTURE, &[], &no_env).unwrap();
    assert_eq!(
        c.master().max_concurrent_imports,
        DEFAULT_CONCURRENT_IMPORTS
    );
    for bad in ["0", "65", "two"] {
        let e = load(
            &format!("{FIXTURE}max_concurrent_imports = {bad}\n"),
            &[],
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[other] max_concurrent_imports") && e.contains("test.conf:15"),
            "{bad}: {e}"
        );
    }
}
