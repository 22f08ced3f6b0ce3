import sys

from cryodiff.cli import main

sys.exit(main())
