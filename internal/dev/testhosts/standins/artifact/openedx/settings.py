"""Settings shared by the LMS and the CMS, read from the service's YAML config file.

As in Open edX, the file is named by the LMS_CFG or CMS_CFG environment variable (default
/edx/etc/lms.yml or /edx/etc/cms.yml) and its top-level keys are Django settings.
"""
import os

import yaml

from openedx.release import RELEASE

# Keys the config file must have, and keys it may set.
REQUIRED = ("SECRET_KEY", "DATABASES")
ALLOWED = REQUIRED + ("ALLOWED_HOSTS", "SITE_NAME", "PLATFORM_NAME", "TIME_ZONE", "LOGGING")


def load(service):
    """Return the settings of service ("lms" or "cms") as a dict of Django settings."""
    var = service.upper() + "_CFG"
    path = os.environ.get(var, "/edx/etc/%s.yml" % service)
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    missing = [k for k in REQUIRED if not config.get(k)]
    if missing:
        raise RuntimeError("%s (%s): missing %s" % (path, var, ", ".join(missing)))
    unknown = sorted(set(config) - set(ALLOWED))
    if unknown:
        raise RuntimeError("%s (%s): unknown settings %s" % (path, var, ", ".join(unknown)))
    settings = {
        "SERVICE": service,
        "RELEASE": RELEASE,
        "CONFIG_FILE": path,
        "DEBUG": False,
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1"],
        "SITE_NAME": "localhost",
        "PLATFORM_NAME": "Open edX stand-in",
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "openedx.heartbeat",
        ],
        "MIDDLEWARE": ["django.middleware.common.CommonMiddleware"],
        "ROOT_URLCONF": "openedx.urls",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
    }
    settings.update(config)
    return settings
