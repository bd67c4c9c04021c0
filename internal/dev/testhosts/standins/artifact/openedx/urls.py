from django.urls import path

from openedx.heartbeat.views import heartbeat

urlpatterns = [
    path("heartbeat", heartbeat),
]
