"""WSGI entry point of the CMS: gunicorn serves cms.wsgi:application."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cms.envs.production")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
