"""edx-platform's heartbeat, as a stand-in: GET /heartbeat answers a JSON object of checks, each
{"status": bool, "message": str}; 200 when every check passes, 503 otherwise (and 503 with
{"error": ...} when the checks themselves fail). Like edx-platform's, it says no release."""
import socket

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

from openedx import release
from openedx.heartbeat.models import Deployment


def check_sql():
    """The database: reachable, every migration applied, the app's table readable."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            return False, "%d migrations not applied" % len(pending)
        Deployment.objects.count()
    except Exception as e:  # the heartbeat reports any database failure, it does not raise
        return False, "%s: %s" % (type(e).__name__, e)
    return True, "OK"


def check_modulestore():
    """The stand-in has no modulestore: this check fails where the release was built broken."""
    broken = getattr(release, "UNHEALTHY_ON", ())
    if "*" in broken or socket.gethostname() in broken:
        return False, "release %s is broken on %s" % (release.RELEASE, socket.gethostname())
    return True, "OK"


def heartbeat(request):
    try:
        checks = {"sql": check_sql(), "modulestore": check_modulestore()}
        body = {name: {"status": ok, "message": msg} for name, (ok, msg) in checks.items()}
        status = 200 if all(ok for ok, _ in checks.values()) else 503
    except Exception as e:
        body, status = {"error": str(e)}, 503
    return JsonResponse(body, status=status)
