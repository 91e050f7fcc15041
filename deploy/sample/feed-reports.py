#!/usr/bin/env python3
"""Sends a few bounce reports and one feedback-loop complaint about real sends
of the quickstart to `mailer inbound`, over SMTP, the way receiving MTAs and
mailbox providers do.

    feed-reports.py MAILDIR PORT FBL_ADDRESS

MAILDIR holds messages a rehearsal sink stored (`mailer sink --maildir`); the
reports are built from their Return-Path (the VERP address mailer put in),
Delivered-To, Message-ID and List-Unsubscribe headers. Two hard bounces and a
delay notice go to their VERP return paths; the complaint, with its
recipient redacted as Microsoft's JMRP does, goes to FBL_ADDRESS and quotes
only the original's headers. Every report has a Message-ID of its own (a
re-run's reports are new reports, not repeats of the last run's).
"""
import os
import smtplib
import sys
import uuid


def headers(path):
    """The top-level headers of a stored message, unfolded, by lower-case name."""
    out = {}
    last = None
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                break
            if line[0] in " \t" and last:
                out[last] += " " + line.strip()
                continue
            name, _, value = line.partition(":")
            last = name.strip().lower()
            out.setdefault(last, value.strip())
    return out


def dsn(verp, rcpt, action, status, diagnostic, n):
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {verp}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <quickstart-dsn-{n}-{uuid.uuid4().hex}@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B\r\nContent-Type: message/rfc822-headers\r\n\r\n"
        f"Return-Path: <{verp}>\r\nTo: {rcpt}\r\nSubject: Hello\r\n\r\n--B--\r\n"
    )


def complaint(original, fbl):
    return (
        f"From: staff@hotmail.com\r\nTo: {fbl}\r\nSubject: complaint about message\r\n"
        f"Message-ID: <quickstart-arf-{uuid.uuid4().hex}@feedback.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        "User-Agent: Microsoft JMRP/1.0\r\nVersion: 1\r\n\r\n"
        "--F\r\nContent-Type: message/rfc822-headers\r\n\r\n"
        f"From: {original.get('from', '')}\r\nTo: <redacted>\r\nSubject: Hello\r\n"
        f"Message-ID: {original.get('message-id', '')}\r\n"
        f"List-Unsubscribe: {original.get('list-unsubscribe', '')}\r\n\r\n--F--\r\n"
    )


def main():
    maildir, port, fbl = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    names = sorted(os.listdir(os.path.join(maildir, "new")))
    sends = [headers(os.path.join(maildir, "new", n)) for n in names]
    sends = [s for s in sends if s.get("return-path", "").startswith("<bounce+")]
    if len(sends) < 4:
        sys.exit(f"feed-reports: only {len(sends)} stored sends in {maildir}, 4 needed")
    reports = []
    for n, (s, (action, status, diag, what)) in enumerate(zip(sends, [
            ("failed", "5.1.1", "550 5.1.1 The email account does not exist", "hard bounce"),
            ("failed", "5.1.1", "550 5.1.1 <recipient>: Recipient address rejected: User unknown", "hard bounce"),
            ("delayed", "4.2.2", "452 4.2.2 Mailbox full, will retry", "delay notice")])):
        verp = s["return-path"].strip("<>")
        reports.append((what, s["delivered-to"], verp,
                        dsn(verp, s["delivered-to"], action, status, diag, n)))
    reports.append(("complaint (recipient redacted)", sends[3]["delivered-to"], fbl,
                    complaint(sends[3], fbl)))
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("mx.example.net")
        for what, about, rcpt, text in reports:
            smtp.sendmail("", [rcpt], text.encode())
            print(f"  {what:31} about {about} -> 250")


if __name__ == "__main__":
    main()
