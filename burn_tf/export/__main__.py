"""``python -m burn_tf.export``: see :mod:`burn_tf.export.cli`."""

import sys

from burn_tf.export.cli import main

sys.exit(main())
