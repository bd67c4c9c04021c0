"""The CMS's entry points: settings (envs.production), the WSGI application and the Celery app.
As edx-platform's, importing it loads its Celery app, so that its tasks go to its broker."""
from .celery import APP as CELERY_APP  # noqa: F401
