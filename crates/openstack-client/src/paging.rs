//! `<key>_links` pagination shared by Nova and Neutron, and the look-ups by
//! id or name every service client offers.

use std::future::Future;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result};
use crate::session::{Req, Session};

/// GET `first` and every `next` link in `<key>_links`, collecting `key`.
pub(crate) async fn get_all<T: DeserializeOwned>(
    session: &Session,
    service: &'static str,
    region: Option<String>,
    headers: &HeaderMap,
    first: Url,
    key: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut next = Some(first);
    let mut pages = 0usize;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 10_000 {
            return Err(Error::InvalidInput(format!(
                "{url}: more than 10000 pages, giving up"
            )));
        }
        let mut req = Req::new(service, region.clone(), Method::GET, url.clone());
        req.headers = headers.clone();
        let resp = session.execute(req).await?;
        let value: serde_json::Value = resp.json()?;
        let items = value
            .get(key)
            .cloned()
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        let batch: Vec<T> = serde_json::from_value(items).map_err(|source| Error::Decode {
            method: Method::GET,
            url: url.to_string(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        let empty = batch.is_empty();
        out.extend(batch);
        let link = value
            .get(format!("{key}_links"))
            .and_then(|l| l.as_array())
            .and_then(|links| {
                links
                    .iter()
                    .find(|l| l.get("rel").and_then(|r| r.as_str()) == Some("next"))
                    .and_then(|l| l.get("href"))
                    .and_then(|h| h.as_str())
            });
        if let (Some(href), false) = (link, empty) {
            next = Some(
                url.join(href)
                    .map_err(|e| Error::InvalidInput(format!("bad next link '{href}': {e}")))?,
            );
        }
    }
    Ok(out)
}

/// Append path segments to a base URL (percent-encoding each one).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Result<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| Error::InvalidInput(format!("endpoint {base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Pick exactly one item by name.
pub(crate) fn one_by_name<T>(kind: &'static str, name: &str, mut found: Vec<T>) -> Result<T> {
    match found.len() {
        0 => Err(Error::NotFound {
            kind,
            name: name.to_owned(),
        }),
        1 => Ok(found.remove(0)),
        count => Err(Error::Ambiguous {
            kind,
            name: name.to_owned(),
            count,
        }),
    }
}

/// `by_id`'s answer, or else, when it is a miss (`is_miss`), the one item
/// `by_name` lists: the `find_*` look-ups by id or exact name.
pub(crate) async fn by_id_or_name<T, F, Fut>(
    kind: &'static str,
    name_or_id: &str,
    by_id: Result<T>,
    is_miss: impl FnOnce(&Error) -> bool,
    by_name: F,
) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Vec<T>>>,
{
    match by_id {
        Ok(found) => Ok(found),
        Err(e) if is_miss(&e) => one_by_name(kind, name_or_id, by_name().await?),
        Err(e) => Err(e),
    }
}
