"""Code shared by the LMS and the CMS (the stand-in of edx-platform's openedx package)."""
