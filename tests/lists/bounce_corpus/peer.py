#!/usr/bin/env python3
"""The receiving side for generating a bounce corpus with real MTAs.

One SMTP server on loopback plays every remote host an MTA relays to:
  * a recipient whose local part starts with rNN. is answered with rule NN of
    the rules file (stage rcpt: at RCPT; stage eod: after the final dot of
    DATA; stage mail: at MAIL FROM, when the sender's local part holds +rNN);
    any other recipient is accepted;
  * a message for the collecting domain (or with the null sender) is a bounce
    coming back: it is stored, one file per message, in the output directory.

  peer.py --port P --rules rules.tsv --out DIR [--collect collect.test]
          [--keep-after-421]
"""
import argparse
import asyncio
import os
import re
import sys
import textwrap


def load_rules(path):
    rules = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            stage, reply = line.split("\t", 1)
            rules.append((stage, reply))
    return rules


def reply_lines(reply, rcpt):
    """A multi-line reply is written '550-5.1.1 text' (as providers log it);
    it goes out wrapped the way Gmail sends it, each line with the code."""
    reply = reply.replace("{rcpt}", rcpt)
    m = re.match(r"^(\d{3})-(\d\.\d{1,3}\.\d{1,3} )?(.*)$", reply)
    if not m:
        return [reply]
    code, status, text = m.group(1), m.group(2) or "", m.group(3)
    parts = textwrap.wrap(text, 60) or [""]
    out = [f"{code}-{status}{p}" for p in parts[:-1]]
    out.append(f"{code} {status}{parts[-1]}")
    return out


def rule_of(address, rules):
    m = re.match(r"^r(\d+)[.+]", address)
    if not m:
        return None
    n = int(m.group(1))
    return rules[n] if n < len(rules) else None


class Peer:
    def __init__(self, rules, out, collect, keep_after_421=False):
        self.keep_after_421 = keep_after_421
        self.rules = rules
        self.out = out
        self.collect = collect.lower()
        self.seq = len(os.listdir(out))

    async def handle(self, reader, writer):
        async def send(lines):
            writer.write("".join(l + "\r\n" for l in lines).encode())
            await writer.drain()
            if lines[-1].startswith("421") and not self.keep_after_421:
                # 421 closes the transmission channel (RFC 5321 3.8).
                raise ConnectionResetError

        await send(["220 peer.test ESMTP"])
        sender, rcpts, eod_rule = None, [], None
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode("latin-1").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    await send(["250-peer.test", "250-8BITMIME", "250-ENHANCEDSTATUSCODES",
                                "250 SIZE 10240000"] if verb == "EHLO" else ["250 peer.test"])
                elif verb == "MAIL":
                    m = re.search(r"<([^>]*)>", line)
                    sender = m.group(1) if m else ""
                    rule = None
                    mm = re.search(r"\+r(\d+)@", sender)
                    if mm and int(mm.group(1)) < len(self.rules):
                        rule = self.rules[int(mm.group(1))]
                    if rule and rule[0] == "mail":
                        sender, rcpts, eod_rule = None, [], None
                        await send(reply_lines(rule[1], ""))
                    else:
                        rcpts, eod_rule = [], None
                        await send(["250 2.1.0 Ok"])
                elif verb == "RCPT":
                    m = re.search(r"<([^>]*)>", line)
                    rcpt = m.group(1) if m else ""
                    rule = rule_of(rcpt, self.rules)
                    if rule and rule[0] == "rcpt":
                        await send(reply_lines(rule[1], rcpt))
                    else:
                        rcpts.append(rcpt)
                        if rule and rule[0] == "eod" and eod_rule is None:
                            eod_rule = (rule, rcpt)
                        await send(["250 2.1.5 Ok"])
                elif verb == "DATA":
                    if sender is None or not rcpts:
                        await send(["503 5.5.1 Error: need RCPT command"])
                        continue
                    await send(["354 End data with <CR><LF>.<CR><LF>"])
                    body = []
                    while True:
                        raw = await reader.readline()
                        if not raw:
                            return
                        if raw in (b".\r\n", b".\n"):
                            break
                        if raw.startswith(b".."):
                            raw = raw[1:]
                        body.append(raw)
                    bounce = sender == "" or any(
                        r.lower().endswith("@" + self.collect) for r in rcpts)
                    if bounce:
                        self.seq += 1
                        path = os.path.join(self.out, f"{self.seq:04d}.eml")
                        with open(path + ".tmp", "wb") as f:
                            f.write(b"".join(body))
                        os.rename(path + ".tmp", path)
                        await send([f"250 2.0.0 Ok: stored {self.seq:04d}"])
                    elif eod_rule:
                        await send(reply_lines(eod_rule[0][1], eod_rule[1]))
                    else:
                        await send(["250 2.0.0 Ok: queued"])
                    sender, rcpts, eod_rule = None, [], None
                elif verb == "RSET":
                    sender, rcpts, eod_rule = None, [], None
                    await send(["250 2.0.0 Ok"])
                elif verb == "QUIT":
                    await send(["221 2.0.0 Bye"])
                    return
                elif verb == "NOOP":
                    await send(["250 2.0.0 Ok"])
                else:
                    await send(["502 5.5.2 Error: command not recognized"])
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--collect", default="collect.test")
    # Keep the connection after a 421, as lenient servers do. OpenSMTPD runs
    # many envelopes through one session; when the session closes at one
    # envelope's 421, every other one in flight fails with "Network error"
    # and expires, and its notices tell nothing about the replies.
    ap.add_argument("--keep-after-421", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    peer = Peer(load_rules(a.rules), a.out, a.collect, a.keep_after_421)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", a.port)
    print(f"peer listening on 127.0.0.1:{a.port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
