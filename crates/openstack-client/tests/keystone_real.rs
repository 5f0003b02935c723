//! Keystone v3 auth variants, catalog errors and 401 re-authentication
//! against the real local cloud.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use openstack_client::glance::ImageFilter;
use openstack_client::{CloudConfig, Credentials, Scope, Secret, Session};

/// The project a cloud of clouds.yaml is scoped to.
fn project_of(cloud: &str) -> String {
    match common::config_named(cloud).scope {
        Scope::Project { name: Some(n), .. } => n,
        other => panic!("cloud {cloud} is not scoped to a project by name: {other:?}"),
    }
}

/// List (one) image in every region of the test cloud through `s`.
async fn list_in_every_region(s: &Session) {
    for r in common::regions() {
        s.image(Some(&r))
            .await
            .unwrap()
            .list_images(&ImageFilter::default().limit(1))
            .await
            .unwrap_or_else(|e| panic!("{r}: {e}"));
    }
}

#[tokio::test]
async fn password_auth_scoped_token_and_catalog() {
    let _serial = common::cloud_lock().await;
    for cloud in [common::cloud_name(), "local-demo".to_string()] {
        let s = common::session_for(common::config_named(&cloud)).await;
        let info = s.token_info().await.unwrap();
        assert_eq!(info.project_name, Some(project_of(&cloud)));
        assert!(info.expires_at.is_some());
        let catalog = s.catalog().await.unwrap();
        let regions = catalog.regions_for("image");
        for r in common::regions() {
            assert!(regions.contains(&r), "{r} missing from {regions:?}");
        }
        list_in_every_region(&s).await;
        assert_eq!(s.auth_count(), 1);
        assert!(!format!("{s:?}").contains(s.token().await.unwrap().expose()));
    }
}

#[tokio::test]
async fn token_and_application_credential_auth() {
    let _serial = common::cloud_lock().await;
    let admin = common::session().await;
    // Token method: exchange an existing token for a project-scoped one.
    let mut cfg = common::config();
    cfg.credentials = Credentials::Token {
        token: admin.token().await.unwrap(),
    };
    let via_token = common::session_for(cfg).await;
    assert_eq!(
        via_token
            .token_info()
            .await
            .unwrap()
            .project_name
            .as_deref(),
        Some(project_of(&common::cloud_name()).as_str())
    );
    via_token
        .image(None)
        .await
        .unwrap()
        .list_images(&ImageFilter::default().limit(1))
        .await
        .unwrap();

    // Application credential (id + secret; the credential carries its scope).
    let user = admin.token_info().await.unwrap().user_id.unwrap();
    let ac = admin
        .identity()
        .create_application_credential(&user, &common::unique("ac"))
        .await
        .unwrap();
    let mut cfg = common::config();
    cfg.credentials = Credentials::ApplicationCredential {
        id: Some(ac.id.clone()),
        name: None,
        user: None,
        secret: ac.secret.clone().unwrap(),
    };
    cfg.scope = Scope::Unscoped;
    let via_ac = common::session_for(cfg).await;
    assert_eq!(
        via_ac.token_info().await.unwrap().project_name.as_deref(),
        Some(project_of(&common::cloud_name()).as_str())
    );
    for r in common::regions() {
        via_ac
            .image(Some(&r))
            .await
            .unwrap()
            .list_images(&ImageFilter::default().limit(1))
            .await
            .unwrap();
    }
    admin
        .identity()
        .delete_application_credential(&user, &ac.id)
        .await
        .unwrap();
}

#[tokio::test]
async fn plain_os_variables_authenticate() {
    let _serial = common::cloud_lock().await;
    // The demo user's name, password and project come from clouds.yaml.
    let demo = common::config_named("local-demo");
    let Credentials::Password { user, password } = &demo.credentials else {
        panic!("the local-demo cloud uses password auth")
    };
    let Scope::Project { name: project, .. } = &demo.scope else {
        panic!("the local-demo cloud is project-scoped")
    };
    let vars = [
        ("OS_AUTH_URL", demo.auth_url.to_string()),
        ("OS_USERNAME", user.name.clone().unwrap()),
        ("OS_PASSWORD", password.expose().to_string()),
        ("OS_PROJECT_NAME", project.clone().unwrap()),
        ("OS_USER_DOMAIN_NAME", "Default".to_string()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".to_string()),
        ("OS_REGION_NAME", common::regions()[1].clone()),
    ];
    let cfg =
        CloudConfig::from_env_with(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let s = common::session_for(cfg).await;
    assert_eq!(
        s.token_info().await.unwrap().project_name.as_deref(),
        project.as_deref()
    );
    let g = s.image(None).await.unwrap();
    assert_eq!(g.region(), Some(common::regions()[1].as_str()));
    g.list_images(&ImageFilter::default().limit(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_credentials_and_catalog_errors() {
    let _serial = common::cloud_lock().await;
    let mut cfg = common::config();
    if let Credentials::Password { password, .. } = &mut cfg.credentials {
        *password = Secret::new("wrong-password");
    }
    let err = Session::connect(cfg).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(err.to_string().contains("/v3/auth/tokens"), "{err}");
    assert!(!err.to_string().contains("wrong-password"));

    let s = common::session().await;
    let err = s.image(Some("RegionNope")).await.unwrap_err().to_string();
    assert!(
        err.contains("no public endpoint for service type 'image' in region 'RegionNope'"),
        "{err}"
    );
    for r in common::regions() {
        assert!(err.contains(&r), "{err}");
    }
    let err = s.endpoint("compute", None).await.unwrap_err().to_string();
    assert!(
        err.contains("'compute'") && err.contains("image ("),
        "{err}"
    );
}

/// A token revoked in Keystone: the next Keystone call gets 401, the session
/// re-authenticates once and the call succeeds.
#[tokio::test]
async fn reauth_after_revocation() {
    let _serial = common::cloud_lock().await;
    let s = common::session().await;
    let other = common::session().await;
    let old = s.token().await.unwrap();
    other.identity().revoke_token(&old).await.unwrap();
    // Keystone's validation cache may keep accepting the token for a
    // moment after revocation: keep calling (bounded) until Keystone rejects
    // it. Every call must succeed: the 401 is absorbed by one re-auth.
    for _ in 0..60 {
        let projects = s
            .identity()
            .list_projects(Some(&project_of(&common::cloud_name())))
            .await
            .unwrap();
        assert_eq!(projects.len(), 1);
        if s.auth_count() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(
        s.auth_count(),
        2,
        "Keystone kept accepting the revoked token for 30 s"
    );
    assert_ne!(s.token().await.unwrap(), old);
}

/// A garbage token rejected by Glance: many concurrent requests share a
/// single re-authentication.
#[tokio::test]
async fn single_flight_reauth_on_glance_401() {
    let _serial = common::cloud_lock().await;
    let s = common::session().await;
    let g = s.image(Some(&common::regions()[0])).await.unwrap();
    s.replace_token_for_test(Secret::new("gAAAAAB-not-a-real-token"))
        .await
        .unwrap();
    let before = s.auth_count();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            g.list_images(&ImageFilter::default().limit(1)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.auth_count(), before + 1);
}

/// Nothing secret in the logs, even at TRACE level, nor in Debug output.
#[tokio::test]
async fn secrets_stay_out_of_logs_and_debug() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let _serial = common::cloud_lock().await;
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let cfg = common::config();
    let password = match &cfg.credentials {
        Credentials::Password { password, .. } => password.expose().to_owned(),
        other => panic!("the test cloud uses password auth, got {other:?}"),
    };
    assert!(!format!("{cfg:?}").contains(&password));
    let s = common::session_for(cfg).await;
    let g = s.image(Some(&common::regions()[0])).await.unwrap();
    g.list_images(&ImageFilter::default().limit(1))
        .await
        .unwrap();
    s.replace_token_for_test(Secret::new("gAAAAAB-garbage-token-for-log-test"))
        .await
        .unwrap();
    g.list_images(&ImageFilter::default().limit(1))
        .await
        .unwrap();
    let token = s.token().await.unwrap();
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("openstack_request"),
        "no request spans captured:\n{logs}"
    );
    assert!(logs.contains("re-authenticating"), "{logs}");
    assert!(!logs.contains(&password), "password in the logs");
    assert!(!logs.contains(token.expose()), "token in the logs");
    assert!(!logs.contains("garbage-token"), "token in the logs");
    assert!(!format!("{s:?} {g:?}").contains(token.expose()));
}

/// The internal interface, a system-scoped token, and an unscoped token's
/// empty catalog reported as such.
#[tokio::test]
async fn internal_interface_and_unscoped_token() {
    let _serial = common::cloud_lock().await;
    let mut cfg = common::config();
    cfg.interface = openstack_client::Interface::Internal;
    let s = common::session_for(cfg).await;
    list_in_every_region(&s).await;

    let mut cfg = common::config();
    cfg.scope = Scope::System;
    let s = common::session_for(cfg).await;
    assert_eq!(s.token_info().await.unwrap().project_id, None);
    assert!(!s.catalog().await.unwrap().services.is_empty());

    let mut cfg = common::config();
    cfg.scope = Scope::Unscoped;
    let s = common::session_for(cfg).await;
    let err = s.image(None).await.unwrap_err().to_string();
    assert!(err.contains("empty catalog"), "{err}");
}

/// Domains by name (`GET /v3/domains?name=`) and by id, projects of the same
/// name told apart by their domain; everything created is deleted.
#[tokio::test]
async fn domains_by_name_and_projects_in_a_domain() {
    let _serial = common::cloud_lock().await;
    let id = common::session().await.identity();
    let default = id.find_domain("Default").await.unwrap();
    assert_eq!(default.id, "default");
    assert_eq!(id.find_domain("default").await.unwrap().name, "Default");
    let name = common::unique("dom");
    let err = id.find_domain(&name).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&name), "{err}");

    let domain = id.create_domain(&name).await.unwrap();
    let project = common::unique("prj");
    let mine = id.create_project(&project, &domain.id).await;
    let other = id.create_project(&project, "default").await;
    let checks = {
        let (id, name, project, domain) =
            (id.clone(), name.clone(), project.clone(), domain.clone());
        let (mine, other) = (mine.as_ref().ok().cloned(), other.as_ref().ok().cloned());
        tokio::spawn(async move {
            let (mine, other) = (mine.unwrap(), other.unwrap());
            assert_eq!(id.find_domain(&name).await.unwrap().id, domain.id);
            assert_eq!(id.find_domain(&domain.id).await.unwrap().name, name);
            let listed = id.list_domains(Some(&name)).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].id, domain.id);
            assert_eq!(mine.domain_id.as_deref(), Some(domain.id.as_str()));
            assert_eq!(id.list_projects(Some(&project)).await.unwrap().len(), 2);
            let err = id.find_project(&project).await.unwrap_err();
            assert!(
                matches!(err, openstack_client::Error::Ambiguous { count: 2, .. }),
                "{err}"
            );
            let in_domain = id
                .list_projects_in_domain(Some(&project), &domain.id)
                .await
                .unwrap();
            assert_eq!(in_domain.len(), 1);
            assert_eq!(in_domain[0].id, mine.id);
            let in_default = id
                .list_projects_in_domain(Some(&project), "default")
                .await
                .unwrap();
            assert_eq!(in_default.len(), 1);
            assert_eq!(in_default[0].id, other.id);
        })
        .await
    };
    for p in [&mine, &other].into_iter().flatten() {
        id.delete_project(&p.id).await.unwrap();
        assert!(id.get_project(&p.id).await.unwrap_err().is_not_found());
    }
    id.delete_domain(&domain.id).await.unwrap();
    assert!(id.find_domain(&name).await.unwrap_err().is_not_found());
    if let Err(e) = checks {
        std::panic::resume_unwind(e.into_panic());
    }
}
