"""Makes the PyTorch reference networks (torch_reference.py) importable from these tests."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
