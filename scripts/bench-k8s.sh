#!/usr/bin/env bash
# Kubernetes backup benchmark, on a real control plane started here (scripts/cluster.sh):
#   scripts/bench-k8s.sh [NAMESPACES] [PER_NAMESPACE]     (default 50 x 200 = 10,000 objects)
# Each namespace gets config maps, secrets, services, deployments (their replica sets and pods
# come with them) and custom objects. Measured in one run, on the same cluster:
#   - listing every namespaced resource type the backup lists, across the namespaces, with
#     `kubectl get --chunk-size=500 -o json` (the yardstick; target: backup within 1.5x of it);
#   - a first backup of the namespaces by the release `stowage controller` into a filesystem
#     location, wall time from creating the Backup to Completed;
#   - a second backup of the unchanged objects, and the bytes each one added;
#   - the controller's peak RSS (VmHWM; target under 150 MiB);
#   - then, with the namespaces deleted, a restore of the first backup into the emptied cluster
#     (verification included), against creating the same objects directly with `kubectl
#     create` (4 at once, as the objects were made; target: the restore within 1.5x of it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
namespaces=${1:-50}
per=${2:-200}
work=$(mktemp -d /tmp/bench-k8s.XXXXXX)
cleanup() {
  [ -n "${ctl_pid:-}" ] && kill "$ctl_pid" 2>/dev/null || true
  bash "$root/scripts/cluster.sh" down "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bin=$(bash "$root/scripts/testenv.sh")
kubectl() { "$bin/kubectl" --kubeconfig "$work/cluster/kubeconfig" "$@"; }
(cd "$root" && cargo build --quiet --release --locked --bin stowage)
stowage="$root/target/release/stowage"
STOWAGE_TESTENV_BIN=$bin bash "$root/scripts/cluster.sh" up "$work/cluster" --nodes 2 2>/dev/null

"$stowage" k8s --kubeconfig "$work/cluster/kubeconfig" crds --apply >/dev/null
kubectl wait --for=condition=Established crd/backups.stowage.dev crd/backupstoragelocations.stowage.dev >/dev/null
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.bench.example.com}
spec:
  group: bench.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
EOF
kubectl wait --for=condition=Established crd/widgets.bench.example.com >/dev/null

# The objects: per namespace 40% config maps, 20% secrets, 20% services, 10% deployments,
# 10% widgets (deployments add a replica set and a pod each). Services are headless: the test
# cluster's service IP range is small.
echo "creating $namespaces namespaces x $per objects..." >&2
start=$(date +%s.%N)
python3 - "$namespaces" "$per" "$work/objects" <<'EOF'
import json, os, random, sys
n, per, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs(out)
rnd = random.Random(7)
def text(k): return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(k))
for i in range(n):
    ns = f"bench-{i:03d}"
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    counts = {"cm": per * 4 // 10, "secret": per * 2 // 10, "svc": per * 2 // 10, "deploy": per // 10}
    counts["widget"] = per - sum(counts.values())
    for j in range(counts["cm"]):
        items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{j}", "namespace": ns, "labels": {"app": f"a{j % 7}"}},
                      "data": {"config.yaml": text(rnd.randint(200, 3000))}})
    for j in range(counts["secret"]):
        items.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"secret-{j}", "namespace": ns}, "stringData": {"token": text(64)}})
    for j in range(counts["svc"]):
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{j}", "namespace": ns},
                      "spec": {"clusterIP": "None", "selector": {"app": f"a{j}"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    for j in range(counts["deploy"]):
        items.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"deploy-{j}", "namespace": ns},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"d{j}"}},
                               "template": {"metadata": {"labels": {"app": f"d{j}"}},
                                            "spec": {"containers": [{"name": "c", "image": "example/app:1", "env": [{"name": "X", "value": text(40)}]}]}}}})
    for j in range(counts["widget"]):
        items.append({"apiVersion": "bench.example.com/v1", "kind": "Widget", "metadata": {"name": f"widget-{j}", "namespace": ns},
                      "spec": {"size": j, "notes": text(300)}})
    with open(f"{out}/{ns}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
EOF
for f in "$work"/objects/*.json; do kubectl create -f "$f" >/dev/null &
  while [ "$(jobs -r | wc -l)" -ge 4 ]; do sleep 0.05; done
done
wait
create_s=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
echo "created in $create_s s; waiting for the replica sets' pods..." >&2
want_pods=$((namespaces * (per / 10)))
for _ in $(seq 1 600); do
  pods=$(kubectl get pods -A --no-headers 2>/dev/null | grep -c '^bench-' || true)
  [ "$pods" -ge "$want_pods" ] && break
  sleep 1
done

# The yardstick: list every namespaced type the backup lists, in every namespace, as kubectl.
types=$(kubectl api-resources --namespaced=true --verbs=list,create,get,delete -o name | paste -sd, -)
t0=$(date +%s.%N)
kubectl get "$types" -A --chunk-size=500 -o json >"$work/listing.json"
t1=$(date +%s.%N)
# Counted once per kind, namespace and name: kubectl lists events from two groups.
objects=$(python3 -c "import json; print(len({(i['kind'], i['metadata'].get('namespace'), i['metadata']['name']) for i in json.load(open('$work/listing.json'))['items'] if i['metadata'].get('namespace','').startswith('bench-')}))")
list_s=$(python3 -c "print(round($t1 - $t0, 2))")

kubectl create namespace stowage >/dev/null
kubectl -n stowage create secret generic repo-password --from-literal=password=bench >/dev/null
mkdir -p "$work/repo" "$work/controller"
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: stowage.dev/v1alpha1
kind: BackupStorageLocation
metadata: {name: default, namespace: stowage}
spec:
  provider: filesystem
  filesystem: {path: $work/repo}
  repositoryPassword: {name: repo-password, key: password}
  default: true
EOF
"$stowage" controller --kubeconfig "$work/cluster/kubeconfig" --namespace stowage \
  --work-dir "$work/controller" >"$work/controller.log" 2>&1 &
ctl_pid=$!
for _ in $(seq 1 300); do
  [ "$(kubectl -n stowage get bsl default -o jsonpath='{.status.phase}' 2>/dev/null)" = Available ] && break
  sleep 0.2
done

run_backup() {
  local name=$1 t0 t1
  t0=$(date +%s.%N)
  cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: stowage.dev/v1alpha1
kind: Backup
metadata: {name: $name, namespace: stowage}
spec: {includedNamespaces: ["bench-*"]}
EOF
  while :; do
    phase=$(kubectl -n stowage get backup "$name" -o jsonpath='{.status.phase}')
    case $phase in Completed | PartiallyFailed | Failed | FailedValidation | Canceled) break ;; esac
    sleep 0.1
  done
  t1=$(date +%s.%N)
  [ "$phase" = Completed ] || { echo "backup $name ended $phase" >&2; kubectl -n stowage get backup "$name" -o yaml >&2; exit 1; }
  python3 -c "print(round($t1 - $t0, 2))"
}
first_s=$(run_backup first)
second_s=$(run_backup second)
items=$(kubectl -n stowage get backup first -o jsonpath='{.status.progress.itemsBackedUp}')
added1=$(kubectl -n stowage get backup first -o jsonpath='{.status.bytesAdded}')
added2=$(kubectl -n stowage get backup second -o jsonpath='{.status.bytesAdded}')
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$ctl_pid/status")

# The restore: every bench namespace deleted (and gone), then the first backup restored.
echo "deleting the namespaces for the restore..." >&2
kubectl delete namespace $(kubectl get ns -o name | sed -n 's|^namespace/\(bench-.*\)|\1|p') --wait=true >/dev/null
t0=$(date +%s.%N)
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: stowage.dev/v1alpha1
kind: Restore
metadata: {name: back, namespace: stowage}
spec: {backupName: first}
EOF
while :; do
  phase=$(kubectl -n stowage get restore back -o jsonpath='{.status.phase}')
  case $phase in Completed | PartiallyFailed | Failed | FailedValidation | Canceled) break ;; esac
  sleep 0.1
done
t1=$(date +%s.%N)
[ "$phase" = Completed ] || { echo "the restore ended $phase" >&2; kubectl -n stowage get restore back -o yaml >&2; exit 1; }
restore_s=$(python3 -c "print(round($t1 - $t0, 2))")
restore_counts=$(kubectl -n stowage get restore back -o jsonpath='{.status.counts.created} created, {.status.counts.unchanged} unchanged, {.status.counts.skipped} skipped, {.status.counts.failed} failed; verified {.status.verification.matched} of {.status.verification.checked}')
rss_after_kib=$(awk '/VmHWM/ {print $2}' "/proc/$ctl_pid/status")

python3 - <<EOF
objects, items, list_s, first_s, second_s = $objects, $items, $list_s, $first_s, $second_s
added1, added2, rss = $added1, $added2, $rss_kib / 1024
create_s, restore_s, rss_after = $create_s, $restore_s, $rss_after_kib / 1024
print(f"objects in the namespaces (kubectl)    {objects}")
print(f"objects backed up (first backup)       {items}")
print(f"kubectl get --chunk-size=500 -o json   {list_s:.2f} s")
print(f"first backup                           {first_s:.2f} s   ({first_s / list_s:.2f}x listing; target <= 1.5x)")
print(f"second backup (unchanged)              {second_s:.2f} s   ({second_s / list_s:.2f}x listing)")
print(f"bytes added: first {added1}, second {added2}  ({100 * added2 / added1:.3f}% of the first; target < 1%)")
print(f"controller peak RSS                    {rss:.1f} MiB   (target < 150 MiB)")
print(f"kubectl create of the objects          {create_s:.2f} s")
print(f"restore into the emptied cluster       {restore_s:.2f} s   ({restore_s / create_s:.2f}x creating; target <= 1.5x)")
print(f"restore outcome                        $restore_counts")
print(f"controller peak RSS after the restore  {rss_after:.1f} MiB")
EOF
