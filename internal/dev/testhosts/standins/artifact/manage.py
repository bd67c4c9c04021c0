#!/usr/bin/python3
"""Open edX style manage.py: ./manage.py lms|cms COMMAND [ARGS].

A stand-in for edx-platform, built by labplane's tests (internal/testhosts/standins): the
service's settings read the YAML file named by LMS_CFG or CMS_CFG, as Open edX's do.
"""
import os
import sys


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("lms", "cms"):
        sys.exit("usage: manage.py lms|cms COMMAND [ARGS]")
    service = sys.argv.pop(1)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", service + ".envs.production")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
