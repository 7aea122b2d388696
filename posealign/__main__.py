import sys

from posealign.cli import main

sys.exit(main())
