"""Settings shared by the LMS and the CMS, read from the service's YAML config file.

As edx-platform's lms/envs/production.py and cms/envs/production.py: the file is named by the
LMS_CFG or CMS_CFG environment variable (required), SERVICE_VARIANT names the service (required,
and it must be the one whose settings these are), and the file's top-level keys are Django
settings.
"""
import os

import yaml
from django.core.exceptions import ImproperlyConfigured

from openedx.release import RELEASE

# Keys the config file must have, and keys it may set.
REQUIRED = ("SECRET_KEY", "DATABASES")
ALLOWED = REQUIRED + ("ALLOWED_HOSTS", "SITE_NAME", "PLATFORM_NAME", "TIME_ZONE", "LOGGING",
                      "STATIC_ROOT", "STATIC_URL", "MEDIA_ROOT", "MEDIA_URL",
                      "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER")


def load(service):
    """Return the settings of service ("lms" or "cms") as a dict of Django settings."""
    variant = os.environ.get("SERVICE_VARIANT")
    if variant != service:
        raise ImproperlyConfigured("%s.envs.production: SERVICE_VARIANT is %r, want %r" % (service, variant, service))
    var = service.upper() + "_CFG"
    path = os.environ.get(var)
    if not path:
        raise ImproperlyConfigured("%s.envs.production: %s is not set (the path of the service's YAML config)" % (service, var))
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    missing = [k for k in REQUIRED if not config.get(k)]
    if missing:
        raise ImproperlyConfigured("%s (%s): missing %s" % (path, var, ", ".join(missing)))
    unknown = sorted(set(config) - set(ALLOWED))
    if unknown:
        raise ImproperlyConfigured("%s (%s): unknown settings %s" % (path, var, ", ".join(unknown)))
    settings = {
        "SERVICE_VARIANT": service,
        "RELEASE": RELEASE,
        "CONFIG_FILE": path,
        "DEBUG": False,
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1"],
        "SITE_NAME": "localhost",
        "PLATFORM_NAME": "Open edX stand-in",
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.staticfiles",
            "openedx.heartbeat",
        ],
        "MIDDLEWARE": ["django.middleware.common.CommonMiddleware"],
        "ROOT_URLCONF": "openedx.urls",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "STATIC_URL": "/static/",
        "MEDIA_URL": "/media/",
    }
    settings.update(config)
    return settings
