"""The status page: a person's view of a running `run`, served on its HTTP port.

`history` keeps what the page shows (recent progress records, the latest closed windows)
in memory; `app` answers `/` and `/api/*` from it; `status.html` draws it in the browser.
"""
