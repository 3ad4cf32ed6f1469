"""``python -m captioning ARGS`` is ``caption ARGS``."""
import sys

from captioning.commands import main

sys.exit(main())
