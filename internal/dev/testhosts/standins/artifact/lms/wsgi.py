"""WSGI entry point of the LMS: gunicorn serves lms.wsgi:application."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lms.envs.production")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
