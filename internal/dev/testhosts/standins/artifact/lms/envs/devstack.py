"""Development settings, which edx-platform's manage.py and wsgi fall back to when no settings
are named: the stand-in refuses them, as a deployed host must never run them."""
from django.core.exceptions import ImproperlyConfigured

raise ImproperlyConfigured(
    "lms.envs.devstack: development settings on a deployed host: name the settings "
    "(DJANGO_SETTINGS_MODULE=lms.envs.production, or manage.py lms --settings=production)"
)
