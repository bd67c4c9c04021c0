"""The LMS's Celery app, as edx-platform's lms/celery.py: its workers run
`celery --app=lms.celery worker` with the settings DJANGO_SETTINGS_MODULE names (the development
ones when none is named)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lms.envs.devstack")

from openedx.celery import APP  # noqa: E402,F401
