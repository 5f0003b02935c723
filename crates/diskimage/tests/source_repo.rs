//! `source-repository-*`: parsing with variable expansion and the
//! `DIB_REPOTYPE_`/`DIB_REPOLOCATION_`/`DIB_REPOREF_`/`DIB_INSTALLTYPE_`
//! overrides, then fetching `file`, `tar` and `git` repositories from local
//! paths and a loopback HTTP server this test starts, through the cache,
//! into a root tree (and offline from the cache).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use diskimage::source_repo::{apply, parse_file, plan, RepoType};
use diskimage::ElementTree;

/// Serve files of `dir` over HTTP on loopback; returns the base URL.
fn serve(dir: PathBuf) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            match std::fs::read(dir.join(path)) {
                Ok(body) => {
                    write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    s.write_all(&body).unwrap();
                }
                Err(_) => write!(s, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap(),
            }
        }
    });
    format!("http://{addr}")
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn parse_with_expansion_and_overrides() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("source-repository-x");
    std::fs::write(
        &f,
        "# comment\n\nmy-agent git /opt/agent https://example.invalid/agent\n\
         constraints file /opt/uc.txt ${UC_BASE}/uc.txt\n\
         tarball tar /opt/t $TARBASE/t.tgz .\n\
         pkgonly package\n",
    )
    .unwrap();
    let e = env(&[("UC_BASE", "http://127.0.0.1:1"), ("TARBASE", "/srv")]);
    let r = parse_file(&f, &e).unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(
        (r[0].kind, r[0].reference.as_str(), r[0].dest.as_str()),
        (RepoType::Git, "master", "/opt/agent")
    );
    assert_eq!(r[1].location, "http://127.0.0.1:1/uc.txt");
    assert_eq!(
        (r[2].location.as_str(), r[2].reference.as_str()),
        ("/srv/t.tgz", ".")
    );
    assert_eq!(r[3].kind, RepoType::Package);
    assert!(r.iter().all(|x| x.source_install));
    assert_eq!(r[1].origin.1, 4);

    let e = env(&[
        ("UC_BASE", "x"),
        ("TARBASE", "/srv"),
        ("DIB_REPOREF_my_agent", "stable/2025.1"),
        ("DIB_REPOLOCATION_my_agent", "/local/agent"),
        ("DIB_REPOTYPE_constraints", "tar"),
        ("DIB_INSTALLTYPE_tarball", "package"),
    ]);
    let r = parse_file(&f, &e).unwrap();
    assert_eq!(
        (r[0].location.as_str(), r[0].reference.as_str()),
        ("/local/agent", "stable/2025.1")
    );
    assert_eq!((r[1].kind, r[1].reference.as_str()), (RepoType::Tar, "*"));
    assert!(!r[2].source_install);
    let e = env(&[("DIB_DEFAULT_INSTALLTYPE", "package")]);
    assert!(parse_file(&f, &e)
        .unwrap()
        .iter()
        .all(|x| !x.source_install));

    for (bad, want) in [
        ("x svn /opt/x loc\n", "unsupported repository type `svn`"),
        ("x git relative loc\n", "must be an absolute path"),
        ("x file /opt/x\n", "needs a destination and a location"),
        ("a b c d e f g\n", "Couldn't parse"),
    ] {
        std::fs::write(&f, bad).unwrap();
        let err = parse_file(&f, &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains(want) && err.contains("source-repository-x:1"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn fetch_file_tar_and_git_into_a_root() {
    let d = tempfile::tempdir().unwrap();
    let srv = d.path().join("srv");
    std::fs::create_dir_all(srv.join("proj-1.0/sub")).unwrap();
    std::fs::write(srv.join("uc.txt"), "pbr===6.0\n").unwrap();
    std::fs::write(srv.join("proj-1.0/README"), "proj\n").unwrap();
    std::fs::write(srv.join("proj-1.0/sub/f"), "sub\n").unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&srv)
        .arg("-czf")
        .arg(srv.join("proj.tgz"))
        .arg("proj-1.0")
        .status()
        .unwrap();
    assert!(st.success());
    let base = serve(srv.clone());

    let repo = d.path().join("agent");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "master"]);
    std::fs::write(repo.join("setup.py"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["branch", "stable"]);
    std::fs::write(repo.join("setup.py"), "v2\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);

    // an element with a source-repository file
    let els = d.path().join("elements/fx-src");
    std::fs::create_dir_all(&els).unwrap();
    std::fs::write(
        els.join("source-repository-fx-src"),
        format!(
            "uc file /opt/uc.txt {base}/uc.txt\n\
             proj tar /opt/proj {base}/proj.tgz *\n\
             projsub tar /opt/projsub {base}/proj.tgz proj-1.0/sub\n\
             agent git /opt/agent {}\n\
             agent-stable git /opt/agent-stable {} stable\n\
             localfile file /opt/local.txt {}\n",
            repo.display(),
            repo.display(),
            srv.join("uc.txt").display()
        ),
    )
    .unwrap();
    let tree = ElementTree::discover(&[d.path().join("elements")]).unwrap();
    let repos = plan(&[tree.get("fx-src").unwrap().clone()], &env(&[])).unwrap();
    assert_eq!(repos.len(), 6);

    let cache = d.path().join("cache/source-repositories");
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    apply(&repos, &cache, &root, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("opt/uc.txt")).unwrap(),
        "pbr===6.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/local.txt")).unwrap(),
        "pbr===6.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/proj/README")).unwrap(),
        "proj\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/projsub/f")).unwrap(),
        "sub\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/agent/setup.py")).unwrap(),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/agent-stable/setup.py")).unwrap(),
        "v1\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/dib-source-repositories")).unwrap(),
        "/opt/uc.txt\n/opt/proj\n/opt/projsub\n/opt/agent\n/opt/agent-stable\n/opt/local.txt\n"
    );
    let cached: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.iter().any(|n| n.starts_with("agent_"))
            && cached.iter().any(|n| n.starts_with("uc_")),
        "{cached:?}"
    );

    // offline: a second root from the cache alone (the sources are gone)
    std::fs::remove_dir_all(&srv).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
    let root2 = d.path().join("root2");
    std::fs::create_dir_all(root2.join("tmp")).unwrap();
    apply(&repos, &cache, &root2, true).unwrap();
    assert_eq!(
        std::fs::read_to_string(root2.join("opt/agent/setup.py")).unwrap(),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_to_string(root2.join("opt/proj/README")).unwrap(),
        "proj\n"
    );
    // online now fails, naming the program
    let root3 = d.path().join("root3");
    let err = apply(&repos, &cache, &root3, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("curl"), "{err}");
    // a missing ref is named
    let bad = plan(
        &[tree.get("fx-src").unwrap().clone()],
        &env(&[("DIB_REPOREF_agent", "no-such-ref")]),
    )
    .unwrap();
    let bad: Vec<_> = bad.into_iter().filter(|r| r.name == "agent").collect();
    let err = apply(&bad, &cache, &d.path().join("root4"), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-ref"), "{err}");
}
