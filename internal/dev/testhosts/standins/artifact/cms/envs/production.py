"""The CMS's production settings, as edx-platform's: read from the YAML file named by CMS_CFG."""
from openedx.settings import load

globals().update(load("cms"))
