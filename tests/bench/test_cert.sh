#!/usr/bin/env bash
# Sourced by the benchmarks: make_test_cert DIR writes a throwaway CA
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
