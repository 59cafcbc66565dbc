"""What the two HTTP faces (the API under /v1, the console at /) stand on, below both: problem
details, admission, body limits, security headers, the workspace and caller dependencies, and
the media types of report files. Neither face is imported here; the faces import this."""
