#!/usr/bin/python3
"""Open edX style manage.py: ./manage.py lms|cms COMMAND [ARGS].

A stand-in for edx-platform, built by labplane's tests (internal/testhosts/standins): the
service's settings read the YAML file named by LMS_CFG or CMS_CFG, as Open edX's do.
"""
import os
import socket
import sys


def migrate_broken_here():
    """Whether this release was built to fail its migrations on this host (standins.ArtifactOptions)."""
    from openedx import release

    broken = getattr(release, "MIGRATE_FAILS_ON", ())
    return "*" in broken or socket.gethostname() in broken


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("lms", "cms"):
        sys.exit("usage: manage.py lms|cms COMMAND [ARGS]")
    service = sys.argv.pop(1)
    if len(sys.argv) > 1 and sys.argv[1] == "migrate" and migrate_broken_here():
        # as a migration that cannot be applied on this host: nothing migrated, exit status 1
        sys.exit("manage.py %s migrate: this release's migrations fail on %s" % (service, socket.gethostname()))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", service + ".envs.production")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
