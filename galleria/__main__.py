"""Allow ``python -m galleria``."""
from galleria.cli import main

raise SystemExit(main())
