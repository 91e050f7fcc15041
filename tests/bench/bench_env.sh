#!/usr/bin/env bash
# Sourced by the sending benchmarks. make_test_cert DIR writes a throwaway CA
# (DIR/ca.pem) and a certificate for the sinks on loopback signed by it
# (DIR/sink.pem, DIR/sink.key; names 127.0.0.1 and localhost), valid for two
# days. The sender trusts it through [sender] ca_file; nothing else does.
make_test_cert() {
  local dir=$1
  local key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  (
    cd "$dir" &&
      openssl req -x509 $key -keyout ca.key -out ca.pem -subj '/CN=mailer bench CA' -days 2 &&
      openssl req $key -keyout sink.key -out sink.csr -subj '/CN=127.0.0.1' &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >sink-ext.cnf &&
      openssl x509 -req -in sink.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out sink.pem \
        -days 2 -extfile sink-ext.cnf
  ) >"$dir/openssl.log" 2>&1 || {
    echo "make_test_cert: openssl failed:" >&2
    cat "$dir/openssl.log" >&2
    return 1
  }
}

# bench_env EGRESS: the setup the sending benchmarks share. Sets WORK (a
# scratch directory), pids (background peers, killed on exit) and EGRESS
# (this run's egress name, whose learned throttle state is deleted on exit so
# it does not show up in other reports); with TLS=on (the default) makes a
# test certificate and sets tls_sink (the sink's flags) and tls_sender (the
# [sender] lines that require and verify STARTTLS against it).
bench_env() {
  WORK=$(mktemp -d)
  pids=()
  EGRESS=$1
  trap bench_cleanup EXIT
  tls_sink=()
  tls_sender=""
  if [ "${TLS:-on}" = on ]; then
    make_test_cert "$WORK"
    tls_sink=(--tls-cert "$WORK/sink.pem" --tls-key "$WORK/sink.key")
    tls_sender=$'starttls = "required"\nverify_certificates = true\nca_file = "'"$WORK/ca.pem"'"'
  fi
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${MAILER_DATABASE_URL:-}" ]; then
    psql "$MAILER_DATABASE_URL" -qc "DELETE FROM throttle_state WHERE egress = '$EGRESS';
      DELETE FROM throttle_history WHERE egress = '$EGRESS';
      DELETE FROM reply_counters WHERE egress = '$EGRESS'" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
