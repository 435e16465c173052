//! A stand-in for a dynamic volume provisioner, for clusters that have none (the test cluster):
//! claims of class [`STAND_IN_CLASS`] get CSI PersistentVolumes of their own, which the real PV
//! controller binds and the [`kubelet`](crate::kubelet) stand-in lays out on the nodes.

use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

/// The storage class the stand-in provisioner serves.
pub const STAND_IN_CLASS: &str = "stowage-test-stand-in";

/// A stand-in for a dynamic volume provisioner (the test cluster has none): every Pending
/// claim of class [`STAND_IN_CLASS`] without a volume gets a new CSI PersistentVolume of its
/// own (`standin-<claim uid>`, driver `stand-in.csi.stowage.test`, volume handle the claim's
/// uid, the claim's volume mode), which the real PV controller then binds. Nothing serves the
/// driver: the test kubelet stand-in lays bound volumes out on the nodes. Creates the class;
/// runs until the returned task is aborted.
pub async fn stand_in_provisioner(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::StorageClass;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": STAND_IN_CLASS}, "provisioner": "stowage.test/stand-in",
        "reclaimPolicy": "Delete"}))
    .unwrap();
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating the stand-in storage class: {e}"),
    }
    let client = client.clone();
    tokio::spawn(async move {
        let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        loop {
            if let Ok(list) = claims.list(&Default::default()).await {
                for c in list.items {
                    let spec = c.spec.clone().unwrap_or_default();
                    let pending =
                        c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
                    if spec.storage_class_name.as_deref() != Some(STAND_IN_CLASS)
                        || spec.volume_name.is_some()
                        || !pending
                    {
                        continue;
                    }
                    let uid = c.metadata.uid.clone().unwrap_or_default();
                    let size = spec
                        .resources
                        .and_then(|r| r.requests)
                        .and_then(|r| r.get("storage").cloned())
                        .map(|q| q.0)
                        .unwrap_or_else(|| "1Gi".into());
                    let pv: PersistentVolume = serde_json::from_value(json!({
                        "metadata": {"name": format!("standin-{uid}"),
                                     "annotations": {"pv.kubernetes.io/provisioned-by": "stowage.test/stand-in"}},
                        "spec": {"capacity": {"storage": size}, "accessModes": spec.access_modes,
                                 "csi": {"driver": "stand-in.csi.stowage.test", "volumeHandle": uid},
                                 "volumeMode": spec.volume_mode.as_deref().unwrap_or("Filesystem"),
                                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": STAND_IN_CLASS,
                                 "claimRef": {"namespace": c.metadata.namespace, "name": c.metadata.name, "uid": uid}}}))
                    .unwrap();
                    let _ = volumes.create(&PostParams::default(), &pv).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}
