"""`gen serve`: a small server-rendered web application over the same Python API as the CLI.

    from gen.serve import ServeSettings, create_app
    app = create_app(ServeSettings("sqlite:///gen.db"))   # then uvicorn.run(app)

app.py holds the application and its guard (token, CSRF, body size), context.py what every page
uses (settings, database, templates, answers), safety.py the checks, routes/ one module per
page family, templates/ and static/ everything the browser gets: nothing is loaded from the
internet.
"""

from gen.serve.app import create_app
from gen.serve.context import ServeSettings

__all__ = ["ServeSettings", "create_app"]
