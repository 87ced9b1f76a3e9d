import sys

from sibyl.cli.main import main

sys.exit(main())
