"""A task for the tests: a worker answers which release, service and host it runs."""
import os
import socket
import sys

from celery import shared_task

from openedx.release import RELEASE


@shared_task
def ping():
    return {"release": RELEASE, "service": os.environ.get("SERVICE_VARIANT", ""), "host": socket.gethostname(),
            "cwd": os.getcwd(), "prefix": sys.prefix}
