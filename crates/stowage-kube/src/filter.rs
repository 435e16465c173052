//! Which namespaces, resource types and objects a Backup selects: Velero's include/exclude
//! semantics (`pkg/util/collections/includes_excludes.go`), kept exactly, with stricter
//! validation up front.
//!
//! What is guaranteed:
//! - An exclude always wins over an include; an empty include list means everything.
//! - Resource names are resolved once, against the API server's resources
//!   ([`ResourceCatalog`]), to Velero's `resource.group` form; all matching is on that form.
//! - Old filters (`includedResources`, `excludedResources`, `includeClusterResources`) and the
//!   scoped filters are never mixed; which one applies is decided as Velero's
//!   `UseOldResourceFilters` does (an all-empty spec uses the old ones, which for an empty
//!   spec select exactly what the scoped ones would).
//! - Every label selector was validated (keys, values, operators) before it is rendered into a
//!   LIST query, so a rendered selector is always one the API server parses.
//!
//! Where we are stricter than Velero, all reported by [`BackupFilter::new`] at once: an
//! *included* resource name the API server does not serve is an error (Velero silently keeps
//! it and matches nothing); an *excluded* unknown name is kept as a literal pattern, as in
//! Velero, so excluding a type some clusters lack is fine. A type listed under the wrong scope
//! (`pods` in `includedClusterScopedResources`) is an error (Velero drops it silently).

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, LabelSelector};

use crate::api::BackupSpec;

/// The group-resource of namespaces, cluster-scoped but treated specially by every filter.
pub const NAMESPACES: &str = "namespaces";
/// The group-resource of CustomResourceDefinitions.
pub const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// A pattern in an include or exclude list that is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A list of included and a list of excluded glob patterns (`*`, `?`, `[...]`; `{a,b}` too):
/// Velero's `IncludesExcludes`.
#[derive(Debug, Clone)]
pub struct IncludesExcludes {
    includes: Vec<String>,
    excludes: Vec<String>,
    include_set: GlobSet,
    exclude_set: GlobSet,
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, PatternError> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| PatternError {
                pattern: p.clone(),
                reason: e.kind().to_string(),
            })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| PatternError {
        pattern: patterns.join(","),
        reason: e.to_string(),
    })
}

impl IncludesExcludes {
    /// Compiles the two lists. Validation of their combination (`*` alone, an item in both)
    /// is [`BackupFilter::new`]'s, as the rules differ between filters.
    pub fn new(includes: Vec<String>, excludes: Vec<String>) -> Result<Self, PatternError> {
        Ok(IncludesExcludes {
            include_set: glob_set(&includes)?,
            exclude_set: glob_set(&excludes)?,
            includes,
            excludes,
        })
    }

    /// Includes everything, excludes nothing.
    pub fn everything() -> Self {
        IncludesExcludes::new(Vec::new(), Vec::new()).expect("no patterns always compile")
    }

    /// Velero's `ShouldInclude`: not matched by an exclude, and the includes are empty,
    /// contain `*`, or one matches.
    pub fn should_include(&self, s: &str) -> bool {
        !self.is_excluded(s) && (self.includes.is_empty() || self.include_set.is_match(s))
    }

    /// Whether an exclude pattern matches `s`.
    pub fn is_excluded(&self, s: &str) -> bool {
        self.exclude_set.is_match(s)
    }

    /// Whether an include pattern (`*` included) matches `s`; false for empty includes.
    pub fn is_listed(&self, s: &str) -> bool {
        self.include_set.is_match(s)
    }

    /// Velero's `IncludeEverything`: no excludes, and includes empty or just `*`.
    pub fn include_everything(&self) -> bool {
        self.excludes.is_empty()
            && (self.includes.is_empty() || (self.includes.iter().all(|i| i == "*")))
    }

    /// The include patterns, as given.
    pub fn includes(&self) -> &[String] {
        &self.includes
    }

    /// The exclude patterns, as given.
    pub fn excludes(&self) -> &[String] {
        &self.excludes
    }
}

/// One resource type the API server serves, as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiResource {
    /// API group, `""` for the core group.
    pub group: String,
    /// The server-preferred version.
    pub version: String,
    /// The plural name, as in URLs (`deployments`).
    pub resource: String,
    /// The kind (`Deployment`).
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// The singular name (`deployment`); may be empty in older discovery documents.
    pub singular: String,
}

impl ApiResource {
    /// Velero's `resource.group` form (`deployments.apps`); the bare resource for the core
    /// group (`pods`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `group/version`, or `version` for the core group: the `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// From one entry of a discovery `APIResourceList` whose `groupVersion` is
    /// `group_version`. `None` for subresources (`pods/log`), which are never backed up.
    pub fn from_discovery(group_version: &str, r: &APIResource) -> Option<Self> {
        if r.name.contains('/') {
            return None;
        }
        let (group, version) = match group_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), group_version.to_string()),
        };
        Some(ApiResource {
            group: r.group.clone().filter(|g| !g.is_empty()).unwrap_or(group),
            version: r
                .version
                .clone()
                .filter(|v| !v.is_empty())
                .unwrap_or(version),
            resource: r.name.clone(),
            kind: r.kind.clone(),
            namespaced: r.namespaced,
            short_names: r.short_names.clone().unwrap_or_default(),
            singular: r.singular_name.clone(),
        })
    }

    fn is_called(&self, name: &str) -> bool {
        self.resource.eq_ignore_ascii_case(name)
            || (!self.singular.is_empty() && self.singular.eq_ignore_ascii_case(name))
            || self.kind.eq_ignore_ascii_case(name)
            || self
                .short_names
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
    }
}

/// The resource types a cluster serves (server-preferred versions, no subresources), in
/// discovery order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceCatalog {
    /// The resource types.
    pub resources: Vec<ApiResource>,
}

impl ResourceCatalog {
    /// Resolves a name as a user writes it: plural, singular, kind (case-insensitive) or short
    /// name, optionally followed by `.group` (`pods`, `po`, `Pod`, `deployments.apps`,
    /// `deploy`, `Deployment.apps`). Without a group the core group wins, then discovery order.
    pub fn resolve(&self, name: &str) -> Option<&ApiResource> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        if let Some(r) = self
            .resources
            .iter()
            .find(|r| r.group_resource().eq_ignore_ascii_case(name))
        {
            return Some(r);
        }
        if let Some((resource, group)) = name.split_once('.') {
            if let Some(r) = self
                .resources
                .iter()
                .find(|r| r.group.eq_ignore_ascii_case(group) && r.is_called(resource))
            {
                return Some(r);
            }
        }
        self.resources
            .iter()
            .find(|r| r.group.is_empty() && r.is_called(name))
            .or_else(|| self.resources.iter().find(|r| r.is_called(name)))
    }

    /// The resource with this exact group-resource (`deployments.apps`).
    pub fn by_group_resource(&self, group_resource: &str) -> Option<&ApiResource> {
        self.resources
            .iter()
            .find(|r| r.group_resource() == group_resource)
    }
}

/// One validated requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }

    fn render(&self) -> String {
        match self {
            Requirement::Equals(k, v) => format!("{k}={v}"),
            Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => k.clone(),
            Requirement::DoesNotExist(k) => format!("!{k}"),
        }
    }
}

/// A validated label selector: all requirements ANDed; empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector(Vec<Requirement>);

impl Selector {
    /// Validates `sel`, naming problems after `field` (`labelSelector`, `orLabelSelectors[1]`).
    fn parse(field: &str, sel: &LabelSelector, problems: &mut Vec<String>) -> Option<Selector> {
        let before = problems.len();
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            check_label_key(&format!("{field}.matchLabels"), k, problems);
            check_label_value(&format!("{field}.matchLabels[{k}]"), v, problems);
            reqs.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let at = format!("{field}.matchExpressions[{i}]");
            check_label_key(&at, &e.key, problems);
            let mut values = e.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            for v in &values {
                check_label_value(&at, v, problems);
            }
            let key = e.key.clone();
            let req = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    problems.push(format!(
                        "{at}: operator {} needs at least one value",
                        e.operator
                    ));
                    continue;
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    problems.push(format!("{at}: operator {} takes no values", e.operator));
                    continue;
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    problems.push(format!(
                        "{at}: operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                    ));
                    continue;
                }
            };
            reqs.push(req);
        }
        (problems.len() == before).then_some(Selector(reqs))
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// The `labelSelector` query value; `None` for the empty selector (matches everything).
    fn render(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        Some(
            self.0
                .iter()
                .map(Requirement::render)
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn check_label_key(at: &str, key: &str, problems: &mut Vec<String>) {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) || !is_label_name(name) {
        problems.push(format!(
            "{at}: {key:?} is not a valid label key (an optional DNS-subdomain prefix and '/', \
             then up to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric)"
        ));
    }
}

fn check_label_value(at: &str, value: &str, problems: &mut Vec<String>) {
    if !value.is_empty() && !is_label_name(value) {
        problems.push(format!(
            "{at}: {value:?} is not a valid label value (up to 63 letters, digits, '-', '_' or \
             '.', starting and ending alphanumeric)"
        ));
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Checks a namespace include/exclude entry: a namespace name, or a glob whose literal parts
/// could be part of one. `""` is allowed, as in Velero.
fn check_namespace(field: &str, ns: &str, problems: &mut Vec<String>) {
    if ns.is_empty() || ns == "*" {
        return;
    }
    // Replace each wildcard and bracket class by a letter, as Velero replaces `*`, and check
    // what remains is a namespace name.
    let mut literal = String::new();
    let mut chars = ns.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => literal.push('x'),
            '[' => {
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
                literal.push('x');
            }
            c => literal.push(c),
        }
    }
    if !is_dns_label(&literal) {
        problems.push(format!(
            "{field}: {ns:?} is not a valid namespace name or pattern (lowercase letters, \
             digits and '-', at most 63, with wildcards *, ? and [...])"
        ));
    }
}

/// Checks Velero's list rules and compiles the list pair.
struct ListRules {
    /// `*` may appear in the excludes (alone, with no includes): the scoped filters.
    star_exclude_allowed: bool,
}

fn build_lists(
    rules: ListRules,
    (inc_field, includes): (&str, Vec<String>),
    (exc_field, excludes): (&str, Vec<String>),
    problems: &mut Vec<String>,
) -> IncludesExcludes {
    if includes.len() > 1 && includes.iter().any(|i| i == "*") {
        problems.push(format!(
            "{inc_field}: '*' must be the only entry when it is used"
        ));
    }
    if excludes.iter().any(|e| e == "*") {
        if !rules.star_exclude_allowed {
            problems.push(format!("{exc_field}: '*' is not allowed"));
        } else if excludes.len() > 1 {
            problems.push(format!(
                "{exc_field}: '*' must be the only entry when it is used"
            ));
        } else if !includes.is_empty() {
            problems.push(format!("{inc_field} must be empty when {exc_field} is '*'"));
        }
    }
    for e in &excludes {
        if e != "*" && includes.contains(e) {
            problems.push(format!("{e} is in both {inc_field} and {exc_field}"));
        }
    }
    let mut compiled = |field: &str, list: Vec<String>| {
        let mut ok = Vec::new();
        for p in list {
            match glob_set(std::slice::from_ref(&p)) {
                Ok(_) => ok.push(p),
                Err(e) => problems.push(format!("{field}: {e}")),
            }
        }
        ok
    };
    let includes = compiled(inc_field, includes);
    let excludes = compiled(exc_field, excludes);
    IncludesExcludes::new(includes, excludes).expect("each pattern compiled on its own")
}

/// Which resource lists a resource name belongs to, for scope checking.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Any,
    Namespaced,
    Cluster,
}

/// Resolves a resource list to group-resource patterns. Includes must name served types;
/// unknown excludes stay literal (lowercased), like Velero.
fn resolve_list(
    field: &str,
    names: &[String],
    catalog: &ResourceCatalog,
    scope: Scope,
    is_include: bool,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        if name == "*" || is_glob(name) {
            out.push(name.clone());
            continue;
        }
        match catalog.resolve(name) {
            Some(r) => {
                let wrong = match scope {
                    Scope::Any => None,
                    Scope::Namespaced if !r.namespaced => Some("cluster-scoped"),
                    Scope::Cluster if r.namespaced => Some("namespaced"),
                    _ => None,
                };
                if let Some(actual) = wrong {
                    let other = if r.namespaced {
                        field.replace("ClusterScoped", "NamespaceScoped")
                    } else {
                        field.replace("NamespaceScoped", "ClusterScoped")
                    };
                    problems.push(format!("{field}: {name} is {actual}; list it in {other}"));
                    continue;
                }
                let gr = r.group_resource();
                if !out.contains(&gr) {
                    out.push(gr);
                }
            }
            None if is_include => problems.push(format!(
                "{field}: unknown resource {name:?} (not served by this cluster)"
            )),
            None => out.push(name.to_ascii_lowercase()),
        }
    }
    out
}

/// The resource-type half of a filter.
#[derive(Debug, Clone)]
enum ResourceFilter {
    /// `includedResources` / `excludedResources` / `includeClusterResources`.
    Old {
        resources: IncludesExcludes,
        include_cluster_resources: Option<bool>,
    },
    /// The four scoped lists.
    Scoped {
        namespaced: IncludesExcludes,
        cluster: IncludesExcludes,
    },
}

/// A Backup's selection, validated and resolved against a cluster's resources.
#[derive(Debug, Clone)]
pub struct BackupFilter {
    namespaces: IncludesExcludes,
    resources: ResourceFilter,
    /// `None`: no selector. Otherwise ORed (one entry for `labelSelector`).
    selectors: Option<Vec<Selector>>,
    crds_explicit: bool,
}

/// Whether a spec uses the old resource filters: Velero's `UseOldResourceFilters` (true when
/// any old field is set, and when no resource filter is set at all).
pub fn uses_old_filters(spec: &BackupSpec) -> bool {
    let old = spec.include_cluster_resources.is_some()
        || !spec.included_resources.is_empty()
        || !spec.excluded_resources.is_empty();
    old || !uses_scoped_fields(spec)
}

fn uses_scoped_fields(spec: &BackupSpec) -> bool {
    !spec.included_cluster_scoped_resources.is_empty()
        || !spec.excluded_cluster_scoped_resources.is_empty()
        || !spec.included_namespace_scoped_resources.is_empty()
        || !spec.excluded_namespace_scoped_resources.is_empty()
}

impl BackupFilter {
    /// Validates the spec's selection and resolves its resource names against `catalog`.
    /// The error lists every problem, one readable sentence each.
    pub fn new(spec: &BackupSpec, catalog: &ResourceCatalog) -> Result<BackupFilter, Vec<String>> {
        let mut problems = Vec::new();

        for ns in &spec.included_namespaces {
            check_namespace("includedNamespaces", ns, &mut problems);
        }
        for ns in &spec.excluded_namespaces {
            check_namespace("excludedNamespaces", ns, &mut problems);
        }
        let namespaces = build_lists(
            ListRules {
                star_exclude_allowed: false,
            },
            ("includedNamespaces", spec.included_namespaces.clone()),
            ("excludedNamespaces", spec.excluded_namespaces.clone()),
            &mut problems,
        );

        let old = spec.include_cluster_resources.is_some()
            || !spec.included_resources.is_empty()
            || !spec.excluded_resources.is_empty();
        if old && uses_scoped_fields(spec) {
            problems.push(
                "includedResources, excludedResources and includeClusterResources cannot be \
                 combined with the scoped filters (included/excludedClusterScopedResources, \
                 included/excludedNamespaceScopedResources)"
                    .to_string(),
            );
        }
        let crd_named = |ie: &IncludesExcludes, count_includes: bool| {
            ie.is_excluded(CRDS) || (count_includes && ie.is_listed(CRDS))
        };
        let (resources, crds_explicit) = if uses_old_filters(spec) {
            let mut f = |field, list: &Vec<String>, inc| {
                resolve_list(field, list, catalog, Scope::Any, inc, &mut problems)
            };
            let inc = f("includedResources", &spec.included_resources, true);
            let exc = f("excludedResources", &spec.excluded_resources, false);
            let resources = build_lists(
                ListRules {
                    star_exclude_allowed: false,
                },
                ("includedResources", inc),
                ("excludedResources", exc),
                &mut problems,
            );
            // With includeClusterResources set, CRDs are listed (true) or refused (false) by
            // the filter itself; unset, only an exclusion is the user's word on them: an
            // included CRD type is not listed by a namespace-limited backup, so the CRDs of
            // backed-up custom resources must still be added.
            let explicit = spec.include_cluster_resources.is_some() || crd_named(&resources, false);
            let filter = ResourceFilter::Old {
                resources,
                include_cluster_resources: spec.include_cluster_resources,
            };
            (filter, explicit)
        } else {
            let mut f = |field, list: &Vec<String>, scope, inc| {
                resolve_list(field, list, catalog, scope, inc, &mut problems)
            };
            let ns_inc = f(
                "includedNamespaceScopedResources",
                &spec.included_namespace_scoped_resources,
                Scope::Namespaced,
                true,
            );
            let ns_exc = f(
                "excludedNamespaceScopedResources",
                &spec.excluded_namespace_scoped_resources,
                Scope::Namespaced,
                false,
            );
            let cl_inc = f(
                "includedClusterScopedResources",
                &spec.included_cluster_scoped_resources,
                Scope::Cluster,
                true,
            );
            let cl_exc = f(
                "excludedClusterScopedResources",
                &spec.excluded_cluster_scoped_resources,
                Scope::Cluster,
                false,
            );
            let star = ListRules {
                star_exclude_allowed: true,
            };
            let namespaced = build_lists(
                star,
                ("includedNamespaceScopedResources", ns_inc),
                ("excludedNamespaceScopedResources", ns_exc),
                &mut problems,
            );
            let star = ListRules {
                star_exclude_allowed: true,
            };
            let cluster = build_lists(
                star,
                ("includedClusterScopedResources", cl_inc),
                ("excludedClusterScopedResources", cl_exc),
                &mut problems,
            );
            let explicit = crd_named(&cluster, true);
            (
                ResourceFilter::Scoped {
                    namespaced,
                    cluster,
                },
                explicit,
            )
        };

        let selectors = match (&spec.label_selector, spec.or_label_selectors.as_slice()) {
            (Some(_), [_, ..]) => {
                problems.push("labelSelector and orLabelSelectors cannot both be set".to_string());
                None
            }
            (Some(sel), []) => {
                Selector::parse("labelSelector", sel, &mut problems).map(|s| vec![s])
            }
            (None, []) => None,
            (None, many) => {
                let parsed: Vec<_> = many
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        Selector::parse(&format!("orLabelSelectors[{i}]"), s, &mut problems)
                    })
                    .collect();
                Some(parsed)
            }
        };

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(BackupFilter {
            namespaces,
            resources,
            selectors,
            crds_explicit,
        })
    }

    /// Whether objects in namespace `ns` may be backed up (the namespace filter only; the
    /// controller adds namespaces labelled `stowage.dev/exclude-from-backup` to the excludes).
    pub fn namespace_included(&self, ns: &str) -> bool {
        self.namespaces.should_include(ns)
    }

    /// Whether the namespace filter selects every namespace (no excludes; includes empty or
    /// `*`): then namespaced types are listed across all namespaces in one LIST.
    pub fn namespaces_everything(&self) -> bool {
        self.namespaces.include_everything()
    }

    /// The namespace filter itself, for expanding its globs against live namespaces.
    pub fn namespace_filter(&self) -> &IncludesExcludes {
        &self.namespaces
    }

    /// Whether the old filters (`includedResources`, ...) are in force.
    pub fn uses_old_filters(&self) -> bool {
        matches!(self.resources, ResourceFilter::Old { .. })
    }

    /// Whether items of type `r` are listed and backed up: Velero's `ShouldInclude`.
    pub fn should_list(&self, r: &ApiResource) -> bool {
        let gr = r.group_resource();
        match &self.resources {
            ResourceFilter::Old {
                resources,
                include_cluster_resources,
            } => {
                if !r.namespaced {
                    if *include_cluster_resources == Some(false) {
                        return false;
                    }
                    if gr != NAMESPACES
                        && include_cluster_resources.is_none()
                        && !self.namespaces.include_everything()
                    {
                        return false;
                    }
                }
                resources.should_include(&gr)
            }
            ResourceFilter::Scoped {
                namespaced,
                cluster,
            } => {
                if r.namespaced {
                    return namespaced.should_include(&gr);
                }
                if cluster.is_excluded(&gr) {
                    return false;
                }
                if cluster.includes().is_empty()
                    && cluster.excludes().is_empty()
                    && self.namespaces.include_everything()
                    && namespaced.include_everything()
                {
                    return true;
                }
                cluster.is_listed(&gr) || gr == NAMESPACES
            }
        }
    }

    /// Whether an item of type `r` pulled in as related to another item (a PVC's PV, a
    /// pod's service account, a custom resource's CRD) must be left out: Velero's
    /// `ShouldExclude`. Only explicit exclusions count, plus, for cluster-scoped types under
    /// the old filters, `includeClusterResources: false` or (unset) a type the resource
    /// filter does not include. A related *namespaced* item must also pass
    /// [`namespace_included`](Self::namespace_included) and [`should_list`](Self::should_list).
    pub fn exclude_related(&self, r: &ApiResource) -> bool {
        let gr = r.group_resource();
        match &self.resources {
            ResourceFilter::Old {
                resources,
                include_cluster_resources,
            } => {
                if resources.is_excluded(&gr) {
                    return true;
                }
                if !r.namespaced {
                    return match include_cluster_resources {
                        Some(false) => true,
                        Some(true) => false,
                        None => !resources.should_include(&gr),
                    };
                }
                false
            }
            ResourceFilter::Scoped {
                namespaced,
                cluster,
            } => {
                if r.namespaced {
                    namespaced.is_excluded(&gr)
                } else {
                    cluster.is_excluded(&gr)
                }
            }
        }
    }

    /// The `labelSelector` query values to LIST each type with, results unioned: one `None`
    /// (no selector) when the backup has none or an empty one, else one per selector
    /// (`labelSelector` alone, or each of `orLabelSelectors`).
    pub fn label_selectors(&self) -> Vec<Option<String>> {
        match &self.selectors {
            None => vec![None],
            Some(list) => {
                let mut out: Vec<Option<String>> = Vec::new();
                for s in list {
                    let r = s.render();
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
                out
            }
        }
    }

    /// Whether the backup has a label selector at all.
    pub fn has_label_selector(&self) -> bool {
        self.selectors.is_some()
    }

    /// Whether an object with these labels is selected: true with no selector, else when any
    /// selector matches. Used for namespaces, which are not LISTed by selector.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.selectors {
            None => true,
            Some(list) => list.iter().any(|s| s.matches(labels)),
        }
    }

    /// Whether the filter itself decides about CustomResourceDefinitions, so the controller
    /// must not add the CRDs of backed-up custom resources on its own (Velero's backup step
    /// 8). Old filters: `includeClusterResources` is set, or CRDs are excluded. Scoped
    /// filters: CRDs are named (or `*`) in the included or excluded cluster-scoped resources.
    /// When false, each added CRD is still subject to [`exclude_related`](Self::exclude_related).
    pub fn crds_explicit(&self) -> bool {
        self.crds_explicit
    }
}

/// A catalog of the common built-in types, for tests across the crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{ApiResource, ResourceCatalog};

    fn r(
        group: &str,
        version: &str,
        resource: &str,
        kind: &str,
        ns: bool,
        short: &[&str],
    ) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            kind: kind.into(),
            namespaced: ns,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            singular: kind.to_ascii_lowercase(),
        }
    }

    /// Pods, PVCs, PVs, namespaces, nodes, deployments, CRDs, cluster roles, a custom
    /// resource, and the two events types.
    pub(crate) fn catalog() -> ResourceCatalog {
        ResourceCatalog {
            resources: vec![
                r("", "v1", "pods", "Pod", true, &["po"]),
                r(
                    "",
                    "v1",
                    "persistentvolumeclaims",
                    "PersistentVolumeClaim",
                    true,
                    &["pvc"],
                ),
                r(
                    "",
                    "v1",
                    "persistentvolumes",
                    "PersistentVolume",
                    false,
                    &["pv"],
                ),
                r("", "v1", "namespaces", "Namespace", false, &["ns"]),
                r("", "v1", "nodes", "Node", false, &["no"]),
                r("", "v1", "secrets", "Secret", true, &[]),
                r("", "v1", "events", "Event", true, &["ev"]),
                r("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
                r(
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                    &["crd", "crds"],
                ),
                r(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "clusterroles",
                    "ClusterRole",
                    false,
                    &[],
                ),
                r("events.k8s.io", "v1", "events", "Event", true, &["ev"]),
                r("example.com", "v1", "widgets", "Widget", true, &["wd"]),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::catalog;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn res(name: &str) -> ApiResource {
        catalog().resolve(name).unwrap().clone()
    }

    fn filter(spec: BackupSpec) -> BackupFilter {
        BackupFilter::new(&spec, &catalog()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn errors(spec: BackupSpec) -> Vec<String> {
        BackupFilter::new(&spec, &catalog()).expect_err("the spec should be refused")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // ---- IncludesExcludes ----

    #[test]
    fn empty_includes_mean_everything_and_excludes_win() {
        let ie = IncludesExcludes::new(vec![], s(&["kube-*"])).unwrap();
        assert!(ie.should_include("app"));
        assert!(!ie.should_include("kube-system"));
        let ie = IncludesExcludes::new(s(&["app-?", "db-[0-9]"]), s(&["app-x"])).unwrap();
        assert!(ie.should_include("app-a") && ie.should_include("db-3"));
        assert!(
            !ie.should_include("app-x"),
            "exclude wins over a matching include"
        );
        assert!(!ie.should_include("app-ab") && !ie.should_include("db-a"));
        let ie = IncludesExcludes::new(s(&["*"]), vec![]).unwrap();
        assert!(ie.should_include("anything") && ie.include_everything());
        assert!(IncludesExcludes::everything().include_everything());
        assert!(!IncludesExcludes::new(vec![], s(&["a"]))
            .unwrap()
            .include_everything());
        assert!(!IncludesExcludes::new(s(&["a"]), vec![])
            .unwrap()
            .include_everything());
    }

    #[test]
    fn a_star_matches_across_dots() {
        let ie = IncludesExcludes::new(s(&["*.apps"]), vec![]).unwrap();
        assert!(ie.should_include("deployments.apps"));
        assert!(!ie.should_include("pods"));
    }

    #[test]
    fn a_broken_glob_is_an_error() {
        let err = IncludesExcludes::new(s(&["[a"]), vec![]).unwrap_err();
        assert_eq!(err.pattern, "[a");
    }

    // ---- catalog ----

    #[test]
    fn names_resolve_the_way_users_write_them() {
        let c = catalog();
        for (name, want) in [
            ("po", "pods"),
            ("pods", "pods"),
            ("pod", "pods"),
            ("Pod", "pods"),
            ("deployments.apps", "deployments.apps"),
            ("deploy", "deployments.apps"),
            ("Deployment", "deployments.apps"),
            ("deployment.apps", "deployments.apps"),
            ("Deployment.apps", "deployments.apps"),
            ("crd", CRDS),
            ("customresourcedefinitions.apiextensions.k8s.io", CRDS),
            ("ns", "namespaces"),
            ("events", "events"),
            ("events.events.k8s.io", "events.events.k8s.io"),
            ("wd", "widgets.example.com"),
        ] {
            assert_eq!(
                c.resolve(name).map(|r| r.group_resource()).as_deref(),
                Some(want),
                "{name}"
            );
        }
        assert!(c.resolve("gadgets").is_none());
        assert!(c.resolve("pods.apps").is_none());
        assert!(c.resolve("").is_none());
    }

    #[test]
    fn discovery_entries_become_resources_and_subresources_are_dropped() {
        let entry = APIResource {
            name: "deployments".into(),
            singular_name: "deployment".into(),
            kind: "Deployment".into(),
            namespaced: true,
            short_names: Some(s(&["deploy"])),
            verbs: s(&["list"]),
            ..Default::default()
        };
        let r = ApiResource::from_discovery("apps/v1", &entry).unwrap();
        assert_eq!((r.group.as_str(), r.version.as_str()), ("apps", "v1"));
        assert_eq!(r.group_resource(), "deployments.apps");
        assert_eq!(r.api_version(), "apps/v1");
        let core = ApiResource::from_discovery(
            "v1",
            &APIResource {
                name: "pods".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (core.group.as_str(), core.api_version().as_str()),
            ("", "v1")
        );
        let sub = APIResource {
            name: "deployments/scale".into(),
            ..Default::default()
        };
        assert!(ApiResource::from_discovery("apps/v1", &sub).is_none());
    }

    // ---- old filters: includeClusterResources tri-state ----

    fn old(icr: Option<bool>, namespaces: &[&str]) -> BackupFilter {
        filter(BackupSpec {
            include_cluster_resources: icr,
            included_namespaces: s(namespaces),
            ..BackupSpec::default()
        })
    }

    #[test]
    fn old_unset_lists_cluster_types_only_for_a_backup_of_every_namespace() {
        let all = old(None, &[]);
        assert!(all.uses_old_filters());
        assert!(all.should_list(&res("pv")) && all.should_list(&res("nodes")));
        assert!(all.should_list(&res("pods")) && all.should_list(&res("ns")));
        let star = old(None, &["*"]);
        assert!(star.should_list(&res("pv")));

        let some = old(None, &["app"]);
        assert!(!some.should_list(&res("pv")) && !some.should_list(&res("crd")));
        assert!(
            some.should_list(&res("namespaces")),
            "namespaces are always listed"
        );
        assert!(some.should_list(&res("pods")));
        // Related cluster-scoped items still come along.
        assert!(!some.exclude_related(&res("pv")));
        assert!(!some.exclude_related(&res("crd")));
        assert!(!some.exclude_related(&res("clusterroles")));
    }

    #[test]
    fn old_unset_with_only_an_exclude_is_namespace_limited() {
        // Velero's IncludeEverything is false as soon as any namespace is excluded.
        let f = filter(BackupSpec {
            excluded_namespaces: s(&["kube-system"]),
            ..BackupSpec::default()
        });
        assert!(!f.namespaces_everything());
        assert!(!f.should_list(&res("pv")));
        assert!(!f.exclude_related(&res("pv")));
        assert!(!f.namespace_included("kube-system") && f.namespace_included("app"));
    }

    #[test]
    fn old_true_lists_cluster_types_always() {
        for ns in [&[][..], &["app"][..]] {
            let f = old(Some(true), ns);
            assert!(
                f.should_list(&res("pv")) && f.should_list(&res("nodes")),
                "{ns:?}"
            );
            assert!(!f.exclude_related(&res("pv")));
            assert!(f.should_list(&res("pods")));
        }
    }

    #[test]
    fn old_false_backs_up_no_cluster_types_not_even_related_ones() {
        for ns in [&[][..], &["app"][..]] {
            let f = old(Some(false), ns);
            assert!(
                !f.should_list(&res("pv")) && !f.should_list(&res("namespaces")),
                "{ns:?}"
            );
            assert!(f.exclude_related(&res("pv")) && f.exclude_related(&res("crd")));
            assert!(f.should_list(&res("pods")) && !f.exclude_related(&res("pods")));
        }
    }

    #[test]
    fn old_resource_lists_resolve_short_names_and_excludes_win() {
        let f = filter(BackupSpec {
            included_resources: s(&["po", "deploy", "pv"]),
            excluded_resources: s(&["secrets"]),
            ..BackupSpec::default()
        });
        assert!(f.should_list(&res("pods")) && f.should_list(&res("deployments.apps")));
        assert!(!f.should_list(&res("secrets")) && !f.should_list(&res("nodes")));
        assert!(
            f.should_list(&res("pv")),
            "a listed cluster type in a full backup"
        );
        assert!(f.exclude_related(&res("secrets")));
        // Unset includeClusterResources: a related cluster type not in the includes is out.
        assert!(f.exclude_related(&res("crd")) && !f.exclude_related(&res("pv")));
        assert!(!f.exclude_related(&res("pods")));
    }

    #[test]
    fn old_resource_globs_match_group_resources() {
        let f = filter(BackupSpec {
            included_resources: s(&["*.apps", "pods"]),
            ..BackupSpec::default()
        });
        assert!(f.should_list(&res("deployments.apps")) && f.should_list(&res("pods")));
        assert!(!f.should_list(&res("secrets")));
    }

    #[test]
    fn old_filter_validation() {
        let e = errors(BackupSpec {
            included_resources: s(&["*", "pods"]),
            excluded_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(
            e.iter()
                .any(|m| m.contains("includedResources: '*' must be the only entry")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("excludedResources: '*' is not allowed")),
            "{e:?}"
        );
        let e = errors(BackupSpec {
            included_resources: s(&["po"]),
            excluded_resources: s(&["pods"]),
            ..BackupSpec::default()
        });
        assert_eq!(
            e,
            ["pods is in both includedResources and excludedResources"]
        );
        let e = errors(BackupSpec {
            included_resources: s(&["gadgets"]),
            ..BackupSpec::default()
        });
        assert_eq!(
            e,
            [r#"includedResources: unknown resource "gadgets" (not served by this cluster)"#]
        );
        // An unknown exclude is harmless, as in Velero.
        let f = filter(BackupSpec {
            excluded_resources: s(&["volumesnapshots.snapshot.storage.k8s.io"]),
            ..BackupSpec::default()
        });
        assert!(f.should_list(&res("pods")));
    }

    // ---- scoped filters ----

    #[test]
    fn scoped_empty_cluster_lists_mean_everything_only_for_a_full_backup() {
        let full = filter(BackupSpec {
            excluded_namespace_scoped_resources: vec![],
            included_namespace_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(!full.uses_old_filters());
        assert!(full.should_list(&res("pv")) && full.should_list(&res("nodes")));

        let some_types = filter(BackupSpec {
            included_namespace_scoped_resources: s(&["pods"]),
            ..BackupSpec::default()
        });
        assert!(some_types.should_list(&res("pods")) && !some_types.should_list(&res("secrets")));
        assert!(!some_types.should_list(&res("pv")));
        assert!(
            some_types.should_list(&res("namespaces")),
            "namespaces unless excluded"
        );
        assert!(!some_types.exclude_related(&res("pv")), "related PVs pass");

        let some_ns = filter(BackupSpec {
            included_namespaces: s(&["app"]),
            included_namespace_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(!some_ns.should_list(&res("pv")));
    }

    #[test]
    fn scoped_cluster_includes_list_just_those_types() {
        let f = filter(BackupSpec {
            included_namespaces: s(&["app"]),
            included_cluster_scoped_resources: s(&["pv", "crd"]),
            ..BackupSpec::default()
        });
        assert!(f.should_list(&res("pv")) && f.should_list(&res("crd")));
        assert!(!f.should_list(&res("nodes")) && f.should_list(&res("namespaces")));
        assert!(f.crds_explicit());
        let star = filter(BackupSpec {
            included_namespaces: s(&["app"]),
            included_cluster_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(star.should_list(&res("nodes")) && star.crds_explicit());
    }

    #[test]
    fn scoped_cluster_excludes_beat_everything_even_namespaces() {
        let f = filter(BackupSpec {
            excluded_cluster_scoped_resources: s(&["nodes", "ns"]),
            ..BackupSpec::default()
        });
        assert!(!f.should_list(&res("nodes")) && !f.should_list(&res("namespaces")));
        assert!(f.exclude_related(&res("nodes")));
        // Velero: a non-empty cluster exclude list turns off the full-backup rule, so other
        // cluster types are no longer listed either; related ones still pass.
        assert!(!f.should_list(&res("pv")) && !f.exclude_related(&res("pv")));
        assert!(f.should_list(&res("pods")));

        let all = filter(BackupSpec {
            excluded_cluster_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(!all.should_list(&res("pv")) && all.exclude_related(&res("pv")));
        assert!(!all.should_list(&res("namespaces")) && all.crds_explicit());
    }

    #[test]
    fn scoped_namespaced_excludes_win() {
        let f = filter(BackupSpec {
            included_namespace_scoped_resources: s(&["*"]),
            excluded_namespace_scoped_resources: vec![],
            excluded_cluster_scoped_resources: vec![],
            ..BackupSpec::default()
        });
        assert!(f.should_list(&res("secrets")));
        let f = filter(BackupSpec {
            excluded_namespace_scoped_resources: s(&["secrets"]),
            ..BackupSpec::default()
        });
        assert!(!f.should_list(&res("secrets")) && f.exclude_related(&res("secrets")));
        assert!(f.should_list(&res("pods")) && !f.exclude_related(&res("pods")));
        assert!(
            !f.should_list(&res("pv")),
            "the namespaced filter is not everything"
        );
        let f = filter(BackupSpec {
            excluded_namespace_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(!f.should_list(&res("pods")) && f.exclude_related(&res("pods")));
    }

    #[test]
    fn scoped_filter_validation() {
        let e = errors(BackupSpec {
            included_cluster_scoped_resources: s(&["pods"]),
            included_namespace_scoped_resources: s(&["pv"]),
            ..BackupSpec::default()
        });
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.contains(&"includedClusterScopedResources: pods is namespaced; list it in includedNamespaceScopedResources".to_string()), "{e:?}");
        assert!(e.contains(&"includedNamespaceScopedResources: pv is cluster-scoped; list it in includedClusterScopedResources".to_string()), "{e:?}");
        let e = errors(BackupSpec {
            included_namespace_scoped_resources: s(&["pods"]),
            excluded_namespace_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        assert!(
            e[0].contains("must be empty when excludedNamespaceScopedResources is '*'"),
            "{e:?}"
        );
        let e = errors(BackupSpec {
            excluded_cluster_scoped_resources: s(&["*", "pv"]),
            ..BackupSpec::default()
        });
        assert!(e[0].contains("'*' must be the only entry"), "{e:?}");
    }

    #[test]
    fn old_and_new_filters_cannot_be_mixed() {
        let e = errors(BackupSpec {
            include_cluster_resources: Some(true),
            included_namespace_scoped_resources: s(&["pods"]),
            ..BackupSpec::default()
        });
        assert!(e.iter().any(|m| m.contains("cannot be combined")), "{e:?}");
    }

    #[test]
    fn an_empty_spec_selects_the_same_with_old_or_scoped_semantics() {
        let empty = filter(BackupSpec::default());
        let scoped = filter(BackupSpec {
            included_namespace_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        for name in ["pods", "pv", "nodes", "crd", "namespaces", "deploy", "wd"] {
            let r = res(name);
            assert_eq!(empty.should_list(&r), scoped.should_list(&r), "{name}");
            assert_eq!(
                empty.exclude_related(&r),
                scoped.exclude_related(&r),
                "{name}"
            );
        }
        // And limited to a namespace.
        let empty = old(None, &["app"]);
        let scoped = filter(BackupSpec {
            included_namespaces: s(&["app"]),
            included_namespace_scoped_resources: s(&["*"]),
            ..BackupSpec::default()
        });
        for name in ["pods", "pv", "nodes", "crd", "namespaces"] {
            let r = res(name);
            assert_eq!(empty.should_list(&r), scoped.should_list(&r), "{name}");
            assert_eq!(
                empty.exclude_related(&r),
                scoped.exclude_related(&r),
                "{name}"
            );
        }
    }

    // ---- namespaces ----

    #[test]
    fn namespace_globs_and_validation() {
        let f = filter(BackupSpec {
            included_namespaces: s(&["app-*", "db-?", "team-[ab]"]),
            excluded_namespaces: s(&["app-tmp"]),
            ..BackupSpec::default()
        });
        for ns in ["app-a", "db-1", "team-a"] {
            assert!(f.namespace_included(ns), "{ns}");
        }
        for ns in ["app-tmp", "db-12", "team-c", "other"] {
            assert!(!f.namespace_included(ns), "{ns}");
        }
        let e = errors(BackupSpec {
            included_namespaces: s(&["Bad_NS", "*", "ok"]),
            excluded_namespaces: s(&["*", "ok"]),
            ..BackupSpec::default()
        });
        assert!(
            e.iter()
                .any(|m| m.contains("\"Bad_NS\" is not a valid namespace")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("includedNamespaces: '*' must be the only entry")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("excludedNamespaces: '*' is not allowed")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "ok is in both includedNamespaces and excludedNamespaces"),
            "{e:?}"
        );
        let e = errors(BackupSpec {
            included_namespaces: s(&["[a"]),
            ..BackupSpec::default()
        });
        assert!(e.iter().any(|m| m.contains("invalid pattern")), "{e:?}");
    }

    // ---- label selectors ----

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| s(values)),
        }
    }

    fn selector(labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!labels.is_empty()).then(|| self::labels(labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn no_selector_lists_once_without_a_query_and_matches_everything() {
        let f = filter(BackupSpec::default());
        assert_eq!(f.label_selectors(), [None]);
        assert!(f.matches_labels(&labels(&[])));
        assert!(!f.has_label_selector());
        let empty = filter(BackupSpec {
            label_selector: Some(LabelSelector::default()),
            ..BackupSpec::default()
        });
        assert_eq!(empty.label_selectors(), [None]);
        assert!(empty.matches_labels(&labels(&[("a", "b")])));
    }

    #[test]
    fn a_selector_renders_in_kubernetes_syntax_and_matches_the_same() {
        let f = filter(BackupSpec {
            label_selector: Some(selector(
                &[("app", "web"), ("example.com/tier", "front")],
                vec![
                    expr("env", "In", &["prod", "dev"]),
                    expr("track", "NotIn", &["canary"]),
                    expr("owner", "Exists", &[]),
                    expr("legacy", "DoesNotExist", &[]),
                ],
            )),
            ..BackupSpec::default()
        });
        assert_eq!(
            f.label_selectors(),
            [Some(
                "app=web,example.com/tier=front,env in (dev,prod),track notin (canary),owner,!legacy"
                    .to_string()
            )]
        );
        let good = [
            ("app", "web"),
            ("example.com/tier", "front"),
            ("env", "dev"),
            ("owner", "x"),
        ];
        assert!(f.matches_labels(&labels(&good)));
        let mut canary = good.to_vec();
        canary.push(("track", "canary"));
        assert!(!f.matches_labels(&labels(&canary)));
        let mut legacy = good.to_vec();
        legacy.push(("legacy", ""));
        assert!(!f.matches_labels(&labels(&legacy)));
        assert!(!f.matches_labels(&labels(&good[..3])), "owner must exist");
        assert!(!f.matches_labels(&labels(&[("app", "web")])));
    }

    #[test]
    fn or_selectors_list_once_each_and_match_any() {
        let f = filter(BackupSpec {
            or_label_selectors: vec![
                selector(&[("app", "a")], vec![]),
                selector(&[("app", "b")], vec![]),
                selector(&[("app", "a")], vec![]),
            ],
            ..BackupSpec::default()
        });
        assert_eq!(
            f.label_selectors(),
            [Some("app=a".to_string()), Some("app=b".to_string())]
        );
        assert!(f.matches_labels(&labels(&[("app", "b")])));
        assert!(!f.matches_labels(&labels(&[("app", "c")])));
        assert!(!f.matches_labels(&labels(&[])));
    }

    #[test]
    fn bad_selectors_are_refused_with_the_field_named() {
        let e = errors(BackupSpec {
            label_selector: Some(selector(&[("app", "a")], vec![])),
            or_label_selectors: vec![selector(&[("app", "b")], vec![])],
            ..BackupSpec::default()
        });
        assert_eq!(e, ["labelSelector and orLabelSelectors cannot both be set"]);
        let e = errors(BackupSpec {
            or_label_selectors: vec![
                selector(&[("app", "ok")], vec![]),
                selector(
                    &[("bad key", "x"), ("k", "a,b")],
                    vec![
                        expr("a", "Equals", &["x"]),
                        expr("b", "In", &[]),
                        expr("c", "Exists", &["x"]),
                        expr("d", "In", &["x)"]),
                    ],
                ),
            ],
            ..BackupSpec::default()
        });
        let want = [
            "orLabelSelectors[1].matchLabels: \"bad key\" is not a valid label key",
            "orLabelSelectors[1].matchLabels[k]: \"a,b\" is not a valid label value",
            "orLabelSelectors[1].matchExpressions[0]: operator \"Equals\" is not one of",
            "orLabelSelectors[1].matchExpressions[1]: operator In needs at least one value",
            "orLabelSelectors[1].matchExpressions[2]: operator Exists takes no values",
            "orLabelSelectors[1].matchExpressions[3]: \"x)\" is not a valid label value",
        ];
        assert_eq!(e.len(), want.len(), "{e:#?}");
        for (got, want) in e.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn label_key_rules() {
        let mut p = Vec::new();
        for good in [
            "app",
            "a.b-c_d",
            "example.com/app",
            "k8s.io/x",
            &"a".repeat(63),
        ] {
            check_label_key("k", good, &mut p);
        }
        assert!(p.is_empty(), "{p:?}");
        for bad in [
            "",
            "-a",
            "a-",
            "Example.com/app",
            "/app",
            "a/b/c",
            &"a".repeat(64),
        ] {
            let mut p = Vec::new();
            check_label_key("k", bad, &mut p);
            assert_eq!(p.len(), 1, "{bad:?}");
        }
    }

    // ---- CRDs ----

    #[test]
    fn crds_are_explicit_only_when_the_filter_decides_about_them() {
        assert!(!filter(BackupSpec::default()).crds_explicit());
        assert!(old(Some(true), &[]).crds_explicit());
        assert!(old(Some(false), &["app"]).crds_explicit());
        assert!(!old(None, &["app"]).crds_explicit());
        let excluded = filter(BackupSpec {
            excluded_resources: s(&["crd"]),
            ..BackupSpec::default()
        });
        assert!(excluded.crds_explicit());
        // Included by name under the old filters, a namespace-limited backup still does not
        // list CRDs, so the controller must still add the ones it needs.
        let included = filter(BackupSpec {
            included_namespaces: s(&["app"]),
            included_resources: s(&["widgets.example.com", "crd"]),
            ..BackupSpec::default()
        });
        assert!(!included.crds_explicit() && !included.should_list(&res("crd")));
        assert!(!included.exclude_related(&res("crd")));
        let scoped = filter(BackupSpec {
            excluded_cluster_scoped_resources: s(&[
                "customresourcedefinitions.apiextensions.k8s.io",
            ]),
            ..BackupSpec::default()
        });
        assert!(scoped.crds_explicit());
        let scoped_other = filter(BackupSpec {
            included_cluster_scoped_resources: s(&["pv"]),
            ..BackupSpec::default()
        });
        assert!(!scoped_other.crds_explicit());
    }

    // ---- properties ----

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            "[a-z0-9.-]{0,20}"
        }

        fn pattern() -> impl Strategy<Value = String> {
            prop_oneof![
                name(),
                "[a-z]{0,4}\\*[a-z]{0,4}",
                "[a-z]{0,4}\\?[a-z]{0,4}",
                Just("*".to_string())
            ]
        }

        proptest! {
            #[test]
            fn no_includes_and_no_excludes_include_everything(s in ".{0,30}") {
                prop_assert!(IncludesExcludes::everything().should_include(&s));
                prop_assert!(IncludesExcludes::new(vec!["*".into()], vec![]).unwrap().should_include(&s));
            }

            #[test]
            fn an_exclude_always_wins(
                includes in proptest::collection::vec(pattern(), 0..4),
                excludes in proptest::collection::vec(pattern(), 0..4),
                extra in name(),
            ) {
                // Exclude the candidate itself (as a literal), whatever the includes say.
                let mut excludes = excludes;
                excludes.push(extra.clone());
                let ie = IncludesExcludes::new(includes.clone(), excludes.clone()).unwrap();
                prop_assert!(!ie.should_include(&extra));
                let mut with_it = includes;
                with_it.push(extra.clone());
                let ie = IncludesExcludes::new(with_it, excludes).unwrap();
                prop_assert!(!ie.should_include(&extra));
            }

            #[test]
            fn should_include_is_not_excluded_and_listed_or_no_includes(
                includes in proptest::collection::vec(pattern(), 0..4),
                excludes in proptest::collection::vec(pattern(), 0..4),
                candidate in name(),
            ) {
                let ie = IncludesExcludes::new(includes.clone(), excludes).unwrap();
                let want = !ie.is_excluded(&candidate) && (includes.is_empty() || ie.is_listed(&candidate));
                prop_assert_eq!(ie.should_include(&candidate), want);
            }
        }
    }
}
