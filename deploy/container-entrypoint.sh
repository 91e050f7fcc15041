#!/bin/sh
# Entry point of the mailer container image: reads the database password
# from a secret file (MAILER_DATABASE_PASSWORD_FILE, e.g. a compose secret
# under /run/secrets) into libpq's PGPASSWORD, so it never appears in the
# configuration, the command line or the image, then runs mailer with the
# given arguments as PID 1's only child (exec: signals reach mailer itself).
set -eu
if [ -n "${MAILER_DATABASE_PASSWORD_FILE:-}" ]; then
  if [ ! -r "$MAILER_DATABASE_PASSWORD_FILE" ]; then
    echo "container-entrypoint: cannot read $MAILER_DATABASE_PASSWORD_FILE" >&2
    exit 2
  fi
  PGPASSWORD=$(cat "$MAILER_DATABASE_PASSWORD_FILE")
  export PGPASSWORD
fi
exec /usr/local/bin/mailer "$@"
