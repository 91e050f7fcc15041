#!/usr/bin/python3
"""Parses a message with Python's email package and prints what a mail
reader would see, as JSON: decoded headers, defects and leaf parts.

Usage: parse_message.py MESSAGE_FILE
"""
import email
import email.policy
import json
import sys


def main():
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        parts.append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "transfer_encoding": part.get("Content-Transfer-Encoding", ""),
            # Line ends as a reader shows them.
            "content": part.get_content().replace("\r\n", "\n"),
            "defects": [type(d).__name__ for d in part.defects],
        })
    out = {
        "headers": [[name, str(value)] for name, value in msg.items()],
        "defects": [type(d).__name__ for d in msg.defects],
        "content_type": msg.get_content_type(),
        "parts": parts,
    }
    for name in ("From", "To", "Reply-To"):
        if msg[name] is not None:
            out[name.lower() + "_addresses"] = [
                {"display_name": a.display_name, "addr_spec": a.addr_spec}
                for a in msg[name].addresses
            ]
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
