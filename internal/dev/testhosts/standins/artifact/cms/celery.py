"""The CMS's Celery app, as edx-platform's cms/celery.py: its workers run
`celery --app=cms.celery worker` with the settings DJANGO_SETTINGS_MODULE names (the development
ones when none is named)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cms.envs.devstack")

from openedx.celery import APP  # noqa: E402,F401
