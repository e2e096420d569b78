"""``python -m workers`` is the ``suture`` command."""

from workers.cli import app

app(prog_name="suture")
