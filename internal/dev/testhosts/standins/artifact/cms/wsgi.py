"""WSGI entry point of the CMS: gunicorn serves cms.wsgi:application. As edx-platform's, it runs
the settings DJANGO_SETTINGS_MODULE names (the development ones when none is named)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cms.envs.devstack")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
