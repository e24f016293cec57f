"""``python -m wacanon`` is the ``wacanon`` command."""

from wacanon.cli import main

main()
