from django.db import models


class Deployment(models.Model):
    """A release deployed on the platform (the table /heartbeat reads)."""

    release = models.CharField(max_length=100)
    service = models.CharField(max_length=10)
    deployed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-deployed_at"]
