"""The LMS's entry points: settings (envs.production) and the WSGI application."""
