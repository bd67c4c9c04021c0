from django.apps import AppConfig


class HeartbeatConfig(AppConfig):
    name = "openedx.heartbeat"
    label = "heartbeat"
