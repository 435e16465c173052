# Starts local S3 servers (moto's server mode) on loopback for the S3 tests and the S3 benchmark.
# Source it from bash; it exports
#   STOWAGE_TEST_S3_ENDPOINT       http://127.0.0.1:PORT   accepts any credentials
#   STOWAGE_TEST_S3_AUTH_ENDPOINT  http://127.0.0.1:PORT   IAM authentication on, with two users:
#   STOWAGE_TEST_S3_AUTH_KEYS      "ID SECRET READONLY_ID READONLY_SECRET"
#   STOWAGE_TEST_S3_TLS_ENDPOINT   https://127.0.0.1:PORT  TLS with a certificate from
#   STOWAGE_TEST_S3_TLS_CA         a private CA (PEM)
#   STOWAGE_TEST_S3_LOG            the first server's request log
# and stops the servers when the sourcing shell exits (stop_s3_servers does it earlier).
# `S3_SERVERS=plain` starts only the first one. Needs python3 with moto[server] (and openssl for
# the TLS server).

_s3_dir=$(mktemp -d "${TMPDIR:-/tmp}/stowage-s3.XXXXXX")
_s3_pids=()

stop_s3_servers() {
  local p
  for p in "${_s3_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${_s3_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  _s3_pids=()
  rm -rf "$_s3_dir"
}
trap stop_s3_servers EXIT

_s3_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# _s3_start NAME PORT [moto_server args...]: starts a server in the background.
_s3_start() {
  local name=$1 port=$2
  shift 2
  moto_server -H 127.0.0.1 -p "$port" "$@" >"$_s3_dir/$name.log" 2>&1 &
  _s3_pids+=($!)
}

# _s3_wait URL NAME: waits until the server answers (30 s at most).
_s3_wait() {
  local i
  for i in $(seq 1 300); do
    if python3 - "$1" <<'EOF' 2>/dev/null; then return 0; fi
import ssl, sys, urllib.request
ctx = ssl._create_unverified_context()
urllib.request.urlopen(sys.argv[1] + "/", timeout=1, context=ctx).read()
EOF
    sleep 0.1
  done
  echo "S3 test server $2 did not start; its log:" >&2
  cat "$_s3_dir/$2.log" >&2
  return 1
}

_s3_plain_port=$(_s3_free_port)
_s3_start plain "$_s3_plain_port"
if [ "${S3_SERVERS:-all}" = all ]; then
  _s3_auth_port=$(_s3_free_port)
  _s3_start auth "$_s3_auth_port"
  if command -v openssl >/dev/null; then
    # A private CA and a certificate for 127.0.0.1 signed by it.
    (
      cd "$_s3_dir"
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=stowage test CA" \
        -keyout ca.key -out ca.pem >/dev/null 2>&1
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr >/dev/null 2>&1
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.pem >/dev/null 2>&1
    )
    _s3_tls_port=$(_s3_free_port)
    _s3_start tls "$_s3_tls_port" -c "$_s3_dir/server.pem" -k "$_s3_dir/server.key"
  fi
fi

_s3_wait "http://127.0.0.1:$_s3_plain_port" plain
export STOWAGE_TEST_S3_ENDPOINT="http://127.0.0.1:$_s3_plain_port"
export STOWAGE_TEST_S3_LOG="$_s3_dir/plain.log"
if [ -n "${_s3_auth_port:-}" ]; then
  _s3_wait "http://127.0.0.1:$_s3_auth_port" auth
  # Two IAM users (full access, read-only), then authentication on for every later request.
  STOWAGE_TEST_S3_AUTH_KEYS=$(python3 - "http://127.0.0.1:$_s3_auth_port" <<'EOF'
import json, sys, urllib.request
import boto3
url = sys.argv[1]
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
def user(name, actions):
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return key["AccessKeyId"], key["SecretAccessKey"]
full = user("stowage", "s3:*")
ro = user("reader", ["s3:GetObject", "s3:ListBucket"])
urllib.request.urlopen(urllib.request.Request(
    url + "/moto-api/reset-auth", data=b"0", method="POST",
    headers={"Content-Type": "text/plain"})).read()
print(*full, *ro)
EOF
  )
  export STOWAGE_TEST_S3_AUTH_ENDPOINT="http://127.0.0.1:$_s3_auth_port"
  export STOWAGE_TEST_S3_AUTH_KEYS
fi
if [ -n "${_s3_tls_port:-}" ]; then
  _s3_wait "https://127.0.0.1:$_s3_tls_port" tls
  export STOWAGE_TEST_S3_TLS_ENDPOINT="https://127.0.0.1:$_s3_tls_port"
  export STOWAGE_TEST_S3_TLS_CA="$_s3_dir/ca.pem"
fi
