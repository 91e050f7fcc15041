#!/usr/bin/python3
"""Reads the single-message dump files of Postfix's smtp-sink (-d) and prints,
as one JSON array, what an independent parser (Python's email package) sees
in each: the envelope smtp-sink recorded and the Message-ID for every dump,
and for every Nth dump (--every N, default 1; the modern parser takes about
10 ms a message) the headers bulk senders must carry (parsed, not just
matched), the MIME structure and the decoded parts.

A dump file is smtp-sink's own header lines (X-Client-Addr, X-Mail-Args,
X-Rcpt-Args, ..., and a three-line Received header that ends them), then the
message as received, dot-unstuffed, with LF line ends, then an empty line.

Usage: read_sink_dumps.py DUMP_DIR [--every N]
"""
import email
import email.policy
import email.utils
import json
import os
import sys


def split_dump(raw):
    """Returns (envelope lines, message bytes) of one dump file."""
    lines = raw.split(b"\n")
    envelope = []
    i = 0
    while i < len(lines) and not lines[i].startswith(b"Received: "):
        envelope.append(lines[i].decode("utf-8", "replace"))
        i += 1
    # The Received header smtp-sink adds: its first line and its
    # continuation lines belong to the dump format, not the message.
    i += 1
    while i < len(lines) and lines[i][:1] in (b"\t", b" "):
        i += 1
    return envelope, b"\n".join(lines[i:])


def header_text(msg, name):
    value = msg[name]
    return None if value is None else str(value)


def addresses(msg, name):
    if msg[name] is None:
        return []
    return [{"display_name": a.display_name, "addr_spec": a.addr_spec}
            for a in msg[name].addresses]


def read_one(path, full):
    with open(path, "rb") as f:
        envelope, data = split_dump(f.read())
    out = {
        "file": os.path.basename(path),
        "mail_from": [l[len("X-Mail-Args: "):] for l in envelope
                      if l.startswith("X-Mail-Args: ")],
        "rcpt_to": [l[len("X-Rcpt-Args: "):] for l in envelope
                    if l.startswith("X-Rcpt-Args: ")],
        "full": full,
    }
    if not full:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        out["message_id"] = msg["Message-ID"]
        return out
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out.update({
        "from": addresses(msg, "From"),
        "to": addresses(msg, "To"),
        "subject": header_text(msg, "Subject"),
        "message_id": header_text(msg, "Message-ID"),
        "mime_version": header_text(msg, "MIME-Version"),
        "content_type": msg.get_content_type(),
        "list_unsubscribe": header_text(msg, "List-Unsubscribe"),
        "list_unsubscribe_post": header_text(msg, "List-Unsubscribe-Post"),
        "feedback_id": header_text(msg, "Feedback-ID"),
        "defects": [type(d).__name__ for d in msg.defects],
        "parts": [],
    })
    date = msg["Date"]
    out["date_parsed"] = False
    if date is not None:
        try:
            out["date_parsed"] = email.utils.parsedate_to_datetime(str(date)) is not None
        except (TypeError, ValueError):
            pass
    for part in msg.walk():
        if part.is_multipart():
            out["defects"] += [type(d).__name__ for d in part.defects]
            continue
        out["parts"].append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "content": part.get_content().replace("\r\n", "\n"),
            "defects": [type(d).__name__ for d in part.defects],
        })
    return out


def main():
    folder = sys.argv[1]
    every = int(sys.argv[3]) if len(sys.argv) == 4 and sys.argv[2] == "--every" else 1
    paths = sorted(os.path.join(root, name)
                   for root, _, names in os.walk(folder) for name in names)
    json.dump([read_one(p, i % every == 0) for i, p in enumerate(paths)], sys.stdout,
              ensure_ascii=False)


if __name__ == "__main__":
    main()
