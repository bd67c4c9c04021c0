"""The CMS's settings: read from the file named by CMS_CFG (default /edx/etc/cms.yml)."""
from openedx.settings import load

globals().update(load("cms"))
