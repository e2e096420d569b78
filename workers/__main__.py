"""``python -m workers`` is the ``suture`` command."""

from workers.cli import main

main()
