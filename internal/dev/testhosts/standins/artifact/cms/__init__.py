"""The CMS's entry points: settings (envs.production) and the WSGI application."""
