#!/usr/bin/env python3
"""Writes a CSV for the import benchmark: N rows of email,first_name,last_name,city
with mixed providers (gmail, yahoo, outlook/hotmail, 2,000 company domains) and
5 % dirty rows (bad syntax, role accounts, disposable and typo domains, and
quoted names with embedded newlines). Addresses are unique even
case-insensitively, so `psql \\copy` into a table with a unique index on
lower(email) loads the same file without errors.

    import_gen.py ROWS OUT.csv [SEED]
"""
import random
import sys

rows = int(sys.argv[1])
out = sys.argv[2]
rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
providers = ["gmail.com"] * 30 + ["yahoo.com"] * 12 + ["outlook.com"] * 8 + ["hotmail.com"] * 8 \
    + ["aol.com"] * 2
companies = [f"company{i}.example" for i in range(2000)]
firsts = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Grace", "Hiro", "Ines", "José"]
lasts = ["Smith", "Müller", "O'Brien", "Nguyen", "García", "Kowalski", "Rossi", "Dubois"]
cities = ["Paris", "Berlin", "New York", "São Paulo", "Tokyo", "Lagos", "Zürich, CH"]


def quote(field):
    if any(c in field for c in ',"\r\n'):
        return '"' + field.replace('"', '""') + '"'
    return field


with open(out, "w", encoding="utf-8", newline="") as f:
    f.write("email,first_name,last_name,city\r\n")
    for i in range(rows):
        first, last, city = rnd.choice(firsts), rnd.choice(lasts), rnd.choice(cities)
        domain = rnd.choice(providers) if rnd.random() < 0.6 else rnd.choice(companies)
        local = f"{first.lower()[:3]}.{i}"
        dirt = rnd.random()
        if dirt < 0.01:
            email = f"{local}@@{domain}"              # syntax
        elif dirt < 0.02:
            email = f"{local} x@{domain}"                # syntax (space)
        elif dirt < 0.03:
            email = f"{local}@mailinator.com"          # disposable
        elif dirt < 0.04:
            email = f"{local}@gmial.com"               # typo
        elif dirt < 0.05:
            email = f"{local}@{domain}"
            first = first + "\r\nemail,first_name\r\nx@y.z"  # embedded newline, header-like text
        else:
            email = f"{local}@{domain}"
        if dirt >= 0.05 and rnd.random() < 0.1:
            email = email[0].upper() + email[1:]
        f.write(",".join(quote(x) for x in (email, first, last, city)) + "\r\n")
