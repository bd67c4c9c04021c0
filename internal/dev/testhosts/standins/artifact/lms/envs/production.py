"""The LMS's production settings, as edx-platform's: read from the YAML file named by LMS_CFG."""
from openedx.settings import load

globals().update(load("lms"))
