"""Settings shared by the LMS and the CMS, read from the service's YAML config file.

As edx-platform's lms/envs/production.py and cms/envs/production.py: the file is named by the
LMS_CFG or CMS_CFG environment variable (required), SERVICE_VARIANT names the service (required,
and it must be the one whose settings these are), and the file's top-level keys are Django
settings.
"""
import json
import os

import standin_runtime  # noqa: F401 (from the release's wheels: only in its virtualenv)
import yaml
from django.core.exceptions import ImproperlyConfigured

from openedx.release import RELEASE

# Keys the config file must have, and keys it may set.
REQUIRED = ("SECRET_KEY", "DATABASES")
ALLOWED = REQUIRED + ("ALLOWED_HOSTS", "SITE_NAME", "PLATFORM_NAME", "TIME_ZONE", "LOGGING",
                      "STATIC_ROOT", "STATIC_URL", "MEDIA_ROOT", "MEDIA_URL",
                      "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER",
                      "DOC_STORE_CONFIG", "CONTENTSTORE", "CACHES",
                      "CELERY_BROKER_TRANSPORT", "CELERY_BROKER_HOSTNAME", "CELERY_BROKER_VHOST",
                      "CELERY_BROKER_USER", "CELERY_BROKER_PASSWORD",
                      "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "EMAIL_HOST_USER",
                      "EMAIL_HOST_PASSWORD", "DEFAULT_FROM_EMAIL", "SERVER_EMAIL",
                      "ELASTIC_SEARCH_CONFIG", "JWT_AUTH")

# The backing services' settings, as edx-platform reads them: (key, path inside it, type). The
# stand-in runs none of these services; it refuses what the real settings would choke on (a
# port given as a string, a single host where a list is read).
TYPED = [
    ("DOC_STORE_CONFIG", ("host",), list), ("DOC_STORE_CONFIG", ("port",), int),
    ("DOC_STORE_CONFIG", ("db",), str),
    ("CONTENTSTORE", ("ENGINE",), str), ("CONTENTSTORE", ("DOC_STORE_CONFIG",), dict),
    ("CACHES", ("default", "BACKEND"), str), ("CACHES", ("default", "LOCATION"), str),
    ("CELERY_BROKER_HOSTNAME", (), str), ("CELERY_BROKER_VHOST", (), str),
    ("EMAIL_PORT", (), int), ("EMAIL_USE_TLS", (), bool), ("DEFAULT_FROM_EMAIL", (), str),
    ("ELASTIC_SEARCH_CONFIG", (0, "host"), str), ("ELASTIC_SEARCH_CONFIG", (0, "port"), int),
    ("ELASTIC_SEARCH_CONFIG", (0, "use_ssl"), bool),
    ("JWT_AUTH", ("JWT_ISSUER",), str), ("JWT_AUTH", ("JWT_PRIVATE_SIGNING_JWK",), str),
    ("JWT_AUTH", ("JWT_PUBLIC_SIGNING_JWK_SET",), str),
]


def check_types(config, path, var):
    """Raise ImproperlyConfigured for a backing service's setting of the wrong shape."""
    for key, inside, kind in TYPED:
        if key not in config:
            continue
        value = config[key]
        try:
            for step in inside:
                value = value[step]
        except (KeyError, IndexError, TypeError):
            raise ImproperlyConfigured("%s (%s): %s has no %s" % (path, var, key, "/".join(map(str, inside))))
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ImproperlyConfigured("%s (%s): %s%s is %r, not a %s" % (
                path, var, key, "".join("[%r]" % s for s in inside), value, kind.__name__))


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
    check_types(config, path, var)
    if "JWT_AUTH" in config:  # edx-platform reads both keys as JSON text
        for key in ("JWT_PRIVATE_SIGNING_JWK", "JWT_PUBLIC_SIGNING_JWK_SET"):
            try:
                json.loads(config["JWT_AUTH"][key])
            except ValueError:
                raise ImproperlyConfigured("%s (%s): JWT_AUTH[%r] is not JSON" % (path, var, key))
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
    if config.get("CELERY_BROKER_TRANSPORT"):
        # as edx-platform's production settings derive it; the result backend is the stand-in's
        # own (its tests read a task's answer back), each service's tasks on a queue of its own
        settings["BROKER_URL"] = "{}://{}:{}@{}/{}".format(
            config["CELERY_BROKER_TRANSPORT"], config.get("CELERY_BROKER_USER", ""),
            config.get("CELERY_BROKER_PASSWORD", ""), config.get("CELERY_BROKER_HOSTNAME", ""),
            config.get("CELERY_BROKER_VHOST", ""))
        settings["CELERY_RESULT_BACKEND"] = settings["BROKER_URL"]
        settings["CELERY_DEFAULT_QUEUE"] = "edx.%s.core.default" % service
    return settings
