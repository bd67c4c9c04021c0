"""The Celery app of the LMS's and the CMS's workers, as edx-platform's openedx/core/lib/celery:
configured from the Django settings (old-style names: BROKER_URL, CELERY_DEFAULT_QUEUE...), its
tasks found in the installed apps."""
from celery import Celery

APP = Celery("proj")
APP.config_from_object("django.conf:settings")
APP.autodiscover_tasks()
