import sys

from fairlab.cli import main

sys.exit(main())
