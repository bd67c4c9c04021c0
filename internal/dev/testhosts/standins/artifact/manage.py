#!/usr/bin/python3
"""edx-platform's manage.py, as a stand-in built by labplane's tests (internal/dev/testhosts/standins).

    DJANGO_SETTINGS_MODULE=lms.envs.production ./manage.py COMMAND [ARGS]    (the standard way)
    ./manage.py lms|cms [--settings=production] COMMAND [ARGS]                (the legacy way)

As edx-platform's: the legacy way without --settings takes DJANGO_SETTINGS_MODULE if it is set,
and the development settings (lms.envs.devstack) otherwise, which refuse to run on a deployed
host; SERVICE_VARIANT defaults to the service named.
"""
import argparse
import os
import socket
import sys


def migrate_broken_here():
    """Whether this release was built to fail its migrations on this host (standins.ArtifactOptions)."""
    from openedx import release

    broken = getattr(release, "MIGRATE_FAILS_ON", ())
    return "*" in broken or socket.gethostname() in broken


def main():
    args = sys.argv[1:]
    if args[:1] in (["lms"], ["cms"]):
        service = args.pop(0)
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--settings")
        known, args = parser.parse_known_args(args)
        if known.settings:
            os.environ["DJANGO_SETTINGS_MODULE"] = "%s.envs.%s" % (service, known.settings)
        else:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "%s.envs.devstack" % service)
        os.environ.setdefault("SERVICE_VARIANT", service)
    elif "DJANGO_SETTINGS_MODULE" not in os.environ:
        sys.exit("usage: DJANGO_SETTINGS_MODULE=lms.envs.production manage.py COMMAND, or manage.py lms|cms [--settings=S] COMMAND")
    if args[:1] == ["migrate"] and migrate_broken_here():
        # as a migration that cannot be applied on this host: nothing migrated, exit status 1
        sys.exit("manage.py migrate: this release's migrations fail on %s" % socket.gethostname())
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0]] + args)


if __name__ == "__main__":
    main()
