import socket

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

from openedx import release
from openedx.heartbeat.models import Deployment


def broken_here():
    """Whether this release was built broken on this host (standins.ArtifactOptions)."""
    broken = getattr(release, "UNHEALTHY_ON", ())
    return "*" in broken or socket.gethostname() in broken


def database_status():
    """Check the database: reachable, every migration applied, the app's table readable."""
    connection = connections[DEFAULT_DB_ALIAS]
    status = {"engine": connection.vendor}
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            status.update(status="error", error="%d migrations not applied" % len(pending))
            return False, status
        status["deployments"] = Deployment.objects.count()
    except Exception as e:  # the heartbeat reports any database failure, it does not raise
        status.update(status="error", error="%s: %s" % (type(e).__name__, e))
        return False, status
    status["status"] = "ok"
    return True, status


def heartbeat(request):
    ok, database = database_status()
    body = {
        "release": settings.RELEASE,
        "service": settings.SERVICE,
        "site_name": settings.SITE_NAME,
        "database": database,
    }
    if broken_here():
        ok = False
        body["error"] = "release %s is broken on %s" % (settings.RELEASE, socket.gethostname())
    body["status"] = "ok" if ok else "error"
    return JsonResponse(body, status=200 if ok else 503)
