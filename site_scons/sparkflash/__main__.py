"""`python -m sparkflash` runs the command line."""

from sparkflash.cli import main

raise SystemExit(main())
