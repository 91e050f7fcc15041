#!/usr/bin/python3
"""Verifies every DKIM-Signature of a message with Debian's python3-dkim.

Usage: dkim_verify.py MESSAGE_FILE NAME=RECORD...
  NAME is "selector._domainkey.domain", RECORD the TXT record published there.
Prints one line per signature ("0 ok" / "0 fail <reason>") and exits 0 only
when there is at least one signature and all verify.
"""
import sys

import dkim


def main():
    with open(sys.argv[1], "rb") as f:
        message = f.read()
    records = {}
    for arg in sys.argv[2:]:
        name, _, record = arg.partition("=")
        records[name.lower().rstrip(".")] = record.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.lower().rstrip("."))

    verifier = dkim.DKIM(message)
    count = sum(1 for k, _ in verifier.headers if k.lower() == b"dkim-signature")
    all_ok = count > 0
    for idx in range(count):
        try:
            ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
            reason = "" if ok else "signature mismatch"
        except dkim.DKIMException as e:
            ok, reason = False, str(e)
        print(f"{idx} {'ok' if ok else 'fail'} {reason}".rstrip())
        all_ok = all_ok and ok
    print(f"signatures {count}")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
