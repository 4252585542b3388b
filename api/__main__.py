import sys

from api.server import main

sys.exit(main())
