"""The LMS's settings: read from the file named by LMS_CFG (default /edx/etc/lms.yml)."""
from openedx.settings import load

globals().update(load("lms"))
