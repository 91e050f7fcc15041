#!/usr/bin/env python3
"""Writes the quickstart's sample list: synthetic recipients spread over the
big providers and some other domains, with the dirty rows real exports carry
(duplicates, role accounts, typo domains, bad syntax, disposable domains).
Deterministic: the same seed gives the same file."""
import csv
import random
import sys

def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "-"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rng = random.Random(2026)
    first = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jon",
             "Kai", "Léa", "Mia", "Noor", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara"]
    domains = ["gmail.com"] * 40 + ["outlook.com", "hotmail.com", "live.com"] * 8 + \
              ["yahoo.com", "aol.com"] * 8 + ["example.org", "example.net", "corp.example"] * 4
    dirty = [
        lambda i: f"postmaster@example.org",                       # role
        lambda i: f"info@corp.example",                            # role
        lambda i: f"user{i}@gmial.com",                            # typo
        lambda i: f"user{i}@hotmial.com",                          # typo
        lambda i: f"user{i}@yaho.com",                             # typo
        lambda i: f"user{i}.@example.org",                         # syntax
        lambda i: f"user{i}@@example.org",                         # syntax
        lambda i: f"not-an-address-{i}",                           # syntax
        lambda i: f"user{i}@mailinator.com",                       # disposable
    ]
    f = open(out, "w", newline="", encoding="utf-8") if out != "-" else sys.stdout
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow(["email", "first_name", "plan"])
    seen = []
    for i in range(count):
        r = rng.random()
        if r < 0.04 and seen:
            email = rng.choice(seen).upper()                       # duplicate, other case
        elif r < 0.10:
            email = rng.choice(dirty)(i)
        else:
            email = f"{rng.choice(first).lower()}.{i}@{rng.choice(domains)}"
            seen.append(email)
        w.writerow([email, rng.choice(first), rng.choice(["free", "pro", "team"])])
    if f is not sys.stdout:
        f.close()

if __name__ == "__main__":
    main()
