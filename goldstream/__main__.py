from goldstream.cli import app

app()
