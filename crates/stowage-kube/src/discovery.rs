//! What the API server serves: every group's preferred version and its resources that a backup
//! can list, recreate and delete (verbs `list`, `create`, `get`, `delete`; no subresources), as
//! Velero's discovery helper keeps them (velero.md §2.2).

use crate::filter::{ApiResource, ResourceCatalog};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};
use kube::Client;

/// Discovery failed as a whole (the core group could not be read). A group that fails alone is
/// a warning in [`Discovered::warnings`] instead.
#[derive(Debug, thiserror::Error)]
#[error("API discovery failed: {0}")]
pub struct DiscoveryError(#[source] pub kube::Error);

/// The catalog, and the groups that could not be read.
#[derive(Debug)]
pub struct Discovered {
    /// The resources, core group first, then groups in the server's order with `extensions`
    /// last (so that a resource two groups serve is taken from the newer one).
    pub catalog: ResourceCatalog,
    /// `group/version: why` for each group whose resources could not be listed.
    pub warnings: Vec<String>,
}

/// Reads the server's discovery documents.
pub async fn discover(client: &Client) -> Result<Discovered, DiscoveryError> {
    let core: APIResourceList = get(client, "/api/v1").await.map_err(DiscoveryError)?;
    let groups: APIGroupList = get(client, "/apis").await.map_err(DiscoveryError)?;
    let mut versions: Vec<String> = groups
        .groups
        .iter()
        .filter_map(|g| {
            g.preferred_version
                .as_ref()
                .map(|v| v.group_version.clone())
        })
        .collect();
    // Stable: only `extensions` moves, to the end.
    versions.sort_by_key(|gv| gv.starts_with("extensions/"));
    let lists = futures::future::join_all(
        versions
            .iter()
            .map(|gv| get::<APIResourceList>(client, format!("/apis/{gv}"))),
    )
    .await;
    let mut catalog = ResourceCatalog {
        resources: Vec::new(),
    };
    let mut warnings = Vec::new();
    add_list(&mut catalog, &core);
    for (gv, list) in versions.iter().zip(lists) {
        match list {
            Ok(list) => add_list(&mut catalog, &list),
            Err(e) => warnings.push(format!("{gv}: {e}")),
        }
    }
    Ok(Discovered { catalog, warnings })
}

async fn get<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: impl AsRef<str>,
) -> Result<T, kube::Error> {
    let req = http::Request::get(path.as_ref())
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request(req).await
}

/// The verbs a resource needs to be backed up and restored.
const NEEDED_VERBS: [&str; 4] = ["list", "create", "get", "delete"];

fn add_list(catalog: &mut ResourceCatalog, list: &APIResourceList) {
    let (group, version) = match list.group_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), list.group_version.clone()),
    };
    for r in &list.resources {
        if r.name.contains('/') || !NEEDED_VERBS.iter().all(|v| r.verbs.iter().any(|x| x == v)) {
            continue;
        }
        catalog.resources.push(ApiResource {
            group: group.clone(),
            version: version.clone(),
            resource: r.name.clone(),
            kind: r.kind.clone(),
            namespaced: r.namespaced,
            short_names: r.short_names.clone().unwrap_or_default(),
            singular: r.singular_name.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(name: &str, verbs: &[&str]) -> APIResource {
        APIResource {
            name: name.into(),
            kind: "Thing".into(),
            namespaced: true,
            singular_name: "thing".into(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_only_backupable_resources_without_subresources() {
        let all = ["list", "create", "get", "delete", "watch"];
        let list = APIResourceList {
            group_version: "example.com/v1".into(),
            resources: vec![
                resource("things", &all),
                resource("things/status", &all),
                resource("views", &["list", "get"]),
            ],
        };
        let mut catalog = ResourceCatalog {
            resources: Vec::new(),
        };
        add_list(&mut catalog, &list);
        assert_eq!(catalog.resources.len(), 1);
        let r = &catalog.resources[0];
        assert_eq!(
            (r.group.as_str(), r.version.as_str()),
            ("example.com", "v1")
        );
        assert_eq!(r.group_resource(), "things.example.com");

        let core = APIResourceList {
            group_version: "v1".into(),
            resources: vec![resource("pods", &all)],
        };
        add_list(&mut catalog, &core);
        assert_eq!(catalog.resources[1].group, "");
        assert_eq!(catalog.resources[1].group_resource(), "pods");
    }
}
